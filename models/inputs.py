"""Batches of transformed examples for the model: lists truncated and padded to fixed widths, with masks."""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from models import features


def _pad(sparse: tf.SparseTensor, width: int, keep_last: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """Left-aligned [B, width] values and mask; keeps the last `width` values (newest history) or the first."""
    ragged = tf.RaggedTensor.from_sparse(sparse)
    ragged = ragged[:, -width:] if keep_last else ragged[:, :width]
    values = ragged.to_tensor(default_value=features.PAD_ID, shape=[None, width])
    mask = tf.ones_like(ragged, dtype=tf.bool).to_tensor(default_value=False, shape=[None, width])
    return values, mask


def pad_batch(batch: dict[str, tf.Tensor], max_history: int, max_hard_negatives: int) -> dict[str, tf.Tensor]:
    """Transformed features (lists as SparseTensors) -> dense model inputs (see models.features)."""
    out = {key: value for key, value in batch.items() if key not in features.LIST_FEATURES_XF}
    out[features.HISTORY_TRACK_IDS_XF], out[features.HISTORY_MASK] = _pad(
        batch[features.HISTORY_TRACK_IDS_XF], max_history, keep_last=True
    )
    out[features.HISTORY_LABELS_XF], _ = _pad(batch[features.HISTORY_LABELS_XF], max_history, keep_last=True)
    out[features.HARD_NEGATIVE_TRACK_IDS_XF], out[features.HARD_NEGATIVE_MASK] = _pad(
        batch[features.HARD_NEGATIVE_TRACK_IDS_XF], max(max_hard_negatives, 1), keep_last=False
    )
    if max_hard_negatives == 0:
        out[features.HARD_NEGATIVE_MASK] = tf.zeros_like(out[features.HARD_NEGATIVE_MASK])
    for key in (features.TARGET_TRACK_ID_XF, features.STATION_ID_XF, features.USER_ID_XF):
        out[key] = tf.reshape(out[key], [-1])
    return out


def make_dataset(
    file_pattern: list[str],
    data_accessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    max_history: int,
    max_hard_negatives: int,
    shuffle: bool,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
    """One pass over transformed examples (TFX's data accessor), batched, padded and prefetched."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, shuffle=shuffle, shuffle_seed=seed, num_epochs=1, drop_final_batch=False
        ),
        tf_transform_output.transformed_metadata.schema,
    )
    return dataset.map(
        lambda batch: pad_batch(batch, max_history, max_hard_negatives), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)


def read_transformed(
    file_pattern: str,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    max_history: int,
    max_hard_negatives: int,
) -> tf.data.Dataset:
    """One ordered pass over transformed TFRecords (gzip, as Transform writes them), outside the Trainer."""
    return parse_records(_records(file_pattern), tf_transform_output, batch_size, max_history, max_hard_negatives)


def _records(file_pattern: str | Sequence[str]) -> tf.data.Dataset:
    """The serialized examples of the files matching `file_pattern` (or any of several), in file-name order."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({name for pattern in patterns for name in tf.io.gfile.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"no transformed examples match {file_pattern}")
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def parse_records(records: tf.data.Dataset, tf_transform_output: tft.TFTransformOutput, batch_size: int,
                  max_history: int, max_hard_negatives: int) -> tf.data.Dataset:
    """Serialized transformed examples -> padded model batches, in the order given."""
    spec = tf_transform_output.transformed_feature_spec()
    return records.batch(batch_size).map(
        lambda batch: pad_batch(tf.io.parse_example(batch, spec), max_history, max_hard_negatives)
    ).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class RecordSample:
    """A uniform sample without replacement of a split's serialized examples, kept in file order."""

    records: np.ndarray
    """The sampled serialized examples (object array of bytes), in the order the files hold them."""
    total: int
    """How many examples the split holds (the sample is all of them when total <= the cap)."""

    @property
    def sampled(self) -> bool:
        return len(self.records) < self.total

    def dataset(self) -> tf.data.Dataset:
        # tf.constant of the bytes list, not a numpy 'S' array (which would drop a record's trailing zero bytes)
        return tf.data.Dataset.from_tensor_slices(tf.constant(self.records.tolist(), dtype=tf.string))


SAMPLE_READ_BATCH = 4096
"""Serialized examples read per step while sampling (memory stays at cap + this many records)."""


def sample_records(file_pattern: str | Sequence[str], max_records: int, seed: int) -> RecordSample:
    """Up to `max_records` of the examples matching `file_pattern`, chosen uniformly without replacement.

    One pass without parsing, in memory bounded by the cap whatever the split's size: each record gets a
    seeded uniform key in file order and the `max_records` smallest keys are kept (bottom-k sampling), so the
    sample depends only on the seed and the files. A split of at most `max_records` examples is kept whole,
    in file order: it is then read exactly as `read_transformed` reads it.
    """
    if max_records < 1:
        raise ValueError(f"max_records must be >= 1, got {max_records}")
    rng = np.random.default_rng(seed)
    kept_records = np.zeros(0, dtype=object)
    kept_keys = np.zeros(0)
    kept_positions = np.zeros(0, dtype=np.int64)
    total = 0
    for batch in _records(file_pattern).batch(SAMPLE_READ_BATCH).as_numpy_iterator():
        records = np.asarray(batch, dtype=object)
        kept_records = np.concatenate([kept_records, records])
        kept_keys = np.concatenate([kept_keys, rng.random(len(records))])
        kept_positions = np.concatenate([kept_positions, total + np.arange(len(records))])
        total += len(records)
        if len(kept_keys) > max_records:
            smallest = np.argpartition(kept_keys, max_records - 1)[:max_records]
            kept_records, kept_keys, kept_positions = \
                kept_records[smallest], kept_keys[smallest], kept_positions[smallest]
    order = np.argsort(kept_positions, kind="stable")
    return RecordSample(kept_records[order], total)


def user_example_counts(file_pattern: str, tf_transform_output: tft.TFTransformOutput) -> dict[bytes, int]:
    """How many examples each listener has in a split (the evaluator's user-activity slices)."""
    spec = {features.USER_ID_XF: tf_transform_output.transformed_feature_spec()[features.USER_ID_XF]}
    counts: dict[bytes, int] = {}
    files = sorted(tf.io.gfile.glob(file_pattern))
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        for user in tf.io.parse_example(batch, spec)[features.USER_ID_XF].numpy().reshape(-1):
            counts[user] = counts.get(user, 0) + 1
    return counts
