"""train_pipeline's logic: train, evaluate, export, write and promote versioned artifacts, warm the API up."""
