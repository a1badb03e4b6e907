"""The Trainer export's on-disk layout: the files `models.trainer.run_fn` writes and everyone else reads.

Inside the Trainer's `model` artifact (`exported_model_dir`):
- `query_model/`: the query tower as a SavedModel; its serving signature's one output is `query_embedding`;
- `candidate_embeddings.npy`: every track id's embedding (vocabulary and OOV), [num_track_ids, D] float32;
- `model_config.json`: the tower and training settings, and what a warm start copied;
- `track_vocabulary.txt`, `station_vocabulary.txt`: the raw ids in id order, so that a later run (whose
  Transform numbers tracks differently) can still score this model and warm-start from it;
- `feedback_type_embeddings.json`: the query tower's embedding of each feedback type;
- `weights/towers*`: both towers' weights as a TF checkpoint (models/warm_start.py).
Inside the `model_run` artifact: `training_history.json`, one row per epoch.

Readers: models/exported.py, models/warm_start.py, models/serving_export.py, the RetrievalEvaluator, the
runners' summaries and the experiments. Plain names and paths only: importing this module loads no TensorFlow.
"""
from __future__ import annotations

import os

from tfx.utils import path_constants

TRAINING_HISTORY_FILE = "training_history.json"
"""In the model run directory: {"epochs": [one row per epoch]}."""
QUERY_MODEL_DIR = "query_model"
CANDIDATE_EMBEDDINGS_FILE = "candidate_embeddings.npy"
MODEL_CONFIG_FILE = "model_config.json"
HISTORY_MEMORY_KEY = "history_memory"
"""In the model config: {feedback type: score offset} of models/memory.py, or null for a model without the term."""
TRACK_VOCABULARY_FILE = "track_vocabulary.txt"
"""Line i is the raw id of track id i (the OOV id is the line count)."""
STATION_VOCABULARY_FILE = "station_vocabulary.txt"
"""Line i is the raw id of station id features.FIRST_STATION_ID + i."""
FEEDBACK_EMBEDDINGS_FILE = "feedback_type_embeddings.json"
"""{label name: the query tower's feedback-type embedding}, for the reports' similarity table."""
WEIGHTS_PREFIX = os.path.join("weights", "towers")
"""Checkpoint prefix of both towers' weights (what a later run warm-starts from)."""
QUERY_EMBEDDING = "query_embedding"
"""The query model signature's one output."""
REQUIRED_FILES: tuple[str, ...] = (QUERY_MODEL_DIR, CANDIDATE_EMBEDDINGS_FILE, MODEL_CONFIG_FILE,
                                   TRACK_VOCABULARY_FILE, STATION_VOCABULARY_FILE, FEEDBACK_EMBEDDINGS_FILE)
"""What a complete export holds besides the weights."""


def exported_model_dir(model_uri: str) -> str:
    """Where run_fn's exports sit inside a Trainer `model` artifact (TFX's serving model folder; a Keras
    Trainer writes no estimator-style `export/` folder below it)."""
    return os.path.join(model_uri, path_constants.SERVING_MODEL_DIR)
