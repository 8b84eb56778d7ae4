"""monitor_pipeline's logic: load the API's prediction log, measure drift, publish reports."""
