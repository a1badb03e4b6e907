"""ExampleGen executor that reads a window of daily spans: the span ExampleGen resolved and the ones before it."""
