"""The penguin species API: serves the model versions that `train_pipeline` promotes in ARTIFACTS_DIR."""
