"""Batches of transformed examples for the model: lists truncated and padded to fixed widths, with masks."""
from __future__ import annotations

from typing import Optional

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
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise FileNotFoundError(f"no transformed examples match {file_pattern}")
    spec = tf_transform_output.transformed_feature_spec()
    dataset = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").batch(batch_size)
    return dataset.map(
        lambda records: pad_batch(tf.io.parse_example(records, spec), max_history, max_hard_negatives)
    ).prefetch(tf.data.AUTOTUNE)


def user_example_counts(file_pattern: str, tf_transform_output: tft.TFTransformOutput) -> dict[bytes, int]:
    """How many examples each listener has in a split (the evaluator's user-activity slices)."""
    spec = {features.USER_ID_XF: tf_transform_output.transformed_feature_spec()[features.USER_ID_XF]}
    counts: dict[bytes, int] = {}
    files = sorted(tf.io.gfile.glob(file_pattern))
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        for user in tf.io.parse_example(batch, spec)[features.USER_ID_XF].numpy().reshape(-1):
            counts[user] = counts.get(user, 0) + 1
    return counts
