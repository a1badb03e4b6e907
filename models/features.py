"""Names of the transformed features and vocabularies, and readers of what Transform wrote.

Naming rule: every output of `preprocessing_fn` is named `transformed_name(raw key)`, i.e. the
labelled-example key from `schema.contract` plus `_xf`, so a model input can always be traced back to
its raw column. The outputs (batch size B):

| key                            | dtype  | shape           | value                                        |
|--------------------------------|--------|-----------------|----------------------------------------------|
| user_id_xf                     | string | [B]             | the raw user id (the loss masks same-user    |
|                                |        |                 | positives with it)                           |
| station_id_xf                  | int64  | [B]             | station id, see below                        |
| target_track_id_xf             | int64  | [B]             | track id in TRACK_VOCAB                      |
| target_label_xf                | int64  | [B]             | index into contract.LABELS (UNKNOWN_LABEL_ID |
|                                |        |                 | only at serving, see below)                  |
| target_timestamp_ms_xf         | int64  | [B]             | the raw timestamp                            |
| history_track_ids_xf           | int64  | sparse [B, None]| track ids, oldest first                      |
| history_labels_xf              | int64  | sparse [B, None]| indices into contract.LABELS, aligned with   |
|                                |        |                 | history_track_ids_xf                         |
| hard_negative_track_ids_xf     | int64  | sparse [B, None]| track ids; a row may be empty                |

The lists are 2-D SparseTensors whose values are packed at the start of each row (parsed back from
transformed examples they are VarLenFeatures); padding them is the model's business.

Track ids: one vocabulary (TRACK_VOCAB) over targets, histories and hard negatives, ordered by decreasing
count; id i is line i of the vocabulary file, and every unseen track maps to the single OOV id
`track_vocab_size(...)` (NUM_OOV_BUCKETS = 1), so a track table needs `num_track_ids(...)` rows.
The file stores the occurrence count of each track ("count token" lines), read by
`read_track_frequencies` for logQ correction and popularity sampling.

Label ids: i means contract.LABELS[i]. Analysis fails on any other label name; the transform graph maps
one at serving (including the '' tf.Transform feeds for a label the client did not send) to
UNKNOWN_LABEL_ID (-1), which the model must mask like padding.

Station ids: NO_STATION_ID (0) means "no station" (the raw '' value); a real station on line i of
STATION_VOCAB has id i + 1; an unseen station gets the OOV id `station_vocab_size(...) + 1`. So a station
table needs `num_station_ids(...)` rows. '' is kept out of the vocabulary on purpose: its id never
depends on how often people listen without a station.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from schema import contract

XF_SUFFIX = "_xf"


def transformed_name(raw_key: str) -> str:
    """The transformed feature key for a labelled-example key."""
    return raw_key + XF_SUFFIX


USER_ID_XF = transformed_name(contract.EX_USER_ID)
STATION_ID_XF = transformed_name(contract.EX_STATION_ID)
TARGET_TRACK_ID_XF = transformed_name(contract.EX_TARGET_TRACK_ID)
TARGET_LABEL_XF = transformed_name(contract.EX_TARGET_LABEL)
TARGET_TIMESTAMP_MS_XF = transformed_name(contract.EX_TARGET_TIMESTAMP_MS)
HISTORY_TRACK_IDS_XF = transformed_name(contract.EX_HISTORY_TRACK_IDS)
HISTORY_LABELS_XF = transformed_name(contract.EX_HISTORY_LABELS)
HARD_NEGATIVE_TRACK_IDS_XF = transformed_name(contract.EX_HARD_NEGATIVE_TRACK_IDS)

TRANSFORMED_FEATURES: tuple[str, ...] = (
    USER_ID_XF,
    STATION_ID_XF,
    TARGET_TRACK_ID_XF,
    TARGET_LABEL_XF,
    TARGET_TIMESTAMP_MS_XF,
    HISTORY_TRACK_IDS_XF,
    HISTORY_LABELS_XF,
    HARD_NEGATIVE_TRACK_IDS_XF,
)
LIST_FEATURES_XF: tuple[str, ...] = (HISTORY_TRACK_IDS_XF, HISTORY_LABELS_XF, HARD_NEGATIVE_TRACK_IDS_XF)
"""The variable-length outputs (SparseTensors); all others are one value per example."""

TRACK_FEATURES: tuple[str, ...] = (
    contract.EX_TARGET_TRACK_ID,
    contract.EX_HISTORY_TRACK_IDS,
    contract.EX_HARD_NEGATIVE_TRACK_IDS,
)
"""Raw features whose values are track ids: they share TRACK_VOCAB."""
LABEL_FEATURES: tuple[str, ...] = (contract.EX_TARGET_LABEL, contract.EX_HISTORY_LABELS)
"""Raw features whose values are label names, mapped to their index in contract.LABELS."""

TRACK_VOCAB = "track_vocab"
STATION_VOCAB = "station_vocab"
NUM_OOV_BUCKETS = 1
NUM_LABELS = len(contract.LABELS)
UNKNOWN_LABEL_ID = -1
"""A label name outside contract.LABELS. Analysis fails on any, so only serving can produce it (e.g. for a
label the client did not send, which tf.Transform fills with '')."""

NO_STATION = ""
"""The raw station_id of a play outside any station (labeled_examples.pbtxt)."""
NO_STATION_ID = 0
FIRST_STATION_ID = 1
"""The id of line 0 of STATION_VOCAB: real stations are shifted past NO_STATION_ID."""


def track_vocab_size(tf_transform_output: tft.TFTransformOutput) -> int:
    """Tracks in the vocabulary; this is also the OOV id."""
    return tf_transform_output.vocabulary_size_by_name(TRACK_VOCAB)


def num_track_ids(tf_transform_output: tft.TFTransformOutput) -> int:
    """Rows a track embedding table needs: the vocabulary plus the OOV bucket."""
    return track_vocab_size(tf_transform_output) + NUM_OOV_BUCKETS


def station_vocab_size(tf_transform_output: tft.TFTransformOutput) -> int:
    """Real stations in the vocabulary ('' is never in it)."""
    return tf_transform_output.vocabulary_size_by_name(STATION_VOCAB)


def station_oov_id(tf_transform_output: tft.TFTransformOutput) -> int:
    """The id of every station not seen by the analysis."""
    return FIRST_STATION_ID + station_vocab_size(tf_transform_output)


def num_station_ids(tf_transform_output: tft.TFTransformOutput) -> int:
    """Rows a station embedding table needs: no-station, the vocabulary and the OOV bucket."""
    return station_oov_id(tf_transform_output) + NUM_OOV_BUCKETS


def read_track_frequencies(tf_transform_output: tft.TFTransformOutput) -> tuple[list[str], np.ndarray]:
    """Tracks in id order and how often each occurred in the analysed data (int64).

    Reads TRACK_VOCAB's "count token" lines; token i has id i. The counts are what logQ correction and
    popularity sampling need, so a line that does not parse is an error, never skipped.
    """
    path = tf_transform_output.vocabulary_file_by_name(TRACK_VOCAB)
    if path is None:
        where = tf_transform_output.transform_savedmodel_dir
        raise FileNotFoundError(f"no vocabulary file {TRACK_VOCAB!r} in {where}")
    with tf.io.gfile.GFile(path, "rb") as vocab_file:
        lines = vocab_file.read().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens, counts = [], []
    for number, line in enumerate(lines):
        count, separator, token = line.partition(" ")
        if not separator or not count.isdigit():
            raise ValueError(f"{path}:{number + 1}: expected 'count token', got {line!r}")
        tokens.append(token)
        counts.append(int(count))
    return tokens, np.asarray(counts, dtype=np.int64)


def track_counts_by_id(tf_transform_output: tft.TFTransformOutput) -> np.ndarray:
    """Occurrence count per track id, the OOV id included (count 0)."""
    _, counts = read_track_frequencies(tf_transform_output)
    return np.concatenate([counts, np.zeros(NUM_OOV_BUCKETS, dtype=np.int64)])


def read_station_vocabulary(tf_transform_output: tft.TFTransformOutput) -> list[str]:
    """Real stations in vocabulary order: line i has id FIRST_STATION_ID + i."""
    path = tf_transform_output.vocabulary_file_by_name(STATION_VOCAB)
    if path is None:
        raise FileNotFoundError(f"no vocabulary file {STATION_VOCAB!r} in {tf_transform_output.transform_savedmodel_dir}")
    return read_lines(path)


def read_lines(path: str) -> list[str]:
    """A UTF-8 text file's lines (one token per line; a trailing newline adds no empty token)."""
    with tf.io.gfile.GFile(path, "rb") as handle:
        lines = handle.read().decode("utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


# --- Model inputs after padding (models/inputs.py) -------------------------------------------------------
# The list features above become dense [B, max_history] / [B, max_hard_negatives] tensors, left-aligned and
# padded with PAD_ID; these masks say which positions are real.
PAD_ID = 0
HISTORY_MASK = "history_mask"
HARD_NEGATIVE_MASK = "hard_negative_mask"
