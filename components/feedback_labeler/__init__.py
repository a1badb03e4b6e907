"""FeedbackLabeler: labelled listening sequences with the listener's own skips and dislikes as hard negatives."""
