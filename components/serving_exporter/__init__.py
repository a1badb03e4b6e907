"""ServingExporter: the Trainer's towers -> the two serving SavedModels the Pushers push (DESIGN §7)."""
