"""data_pipeline's logic: read a source, keep it raw, clean it."""
