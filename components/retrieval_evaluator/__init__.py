"""RetrievalEvaluator: exact offline metrics on the test split, slices, a report, and the blessing."""
