"""ServingExporter: the Trainer's towers -> the two serving SavedModels the Pushers push (docs/design.md §7)."""
