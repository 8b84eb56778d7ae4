"""The shared core of the three pipelines: settings, table schema, the data store, errors, the task runner."""
