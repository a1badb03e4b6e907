"""Model code: the Transform preprocessing_fn, its feature names, and (next) the Trainer."""
