"""The Transform component's preprocessing_fn: track, station and label ids for the labelled examples.

Used as `Transform(preprocessing_fn="models.preprocessing.preprocessing_fn")`; the output keys, dtypes and
id conventions are listed in `models.features`. The inputs are what TFXIO parses with
`schema/labeled_examples.pbtxt`: the scalars as dense [B, 1] tensors, the lists as 2-D SparseTensors,
which come out as SparseTensors of ids with the same rows. (The helpers also keep RaggedTensors ragged,
but only the SparseTensor path is exercised by the tests.)

Why it is built this way:
- One track vocabulary over targets, histories and hard negatives, so a track has the same id wherever it
  appears, and the counts stored beside it are exact occurrence counts over all three (the Trainer's
  logQ correction and popularity sampling read them). tf.Transform silently drops empty tokens and tokens
  with '\\n' or '\\r' from text vocabularies, and looks frequency files up by splitting lines on ' ', so
  such a track id would lose its count or its id: analysing data that holds one fails instead.
- Labels are ids into the fixed `contract.LABELS` (a static table, not a learned vocabulary, so id i
  always means LABELS[i]). Analysing data that holds any other label name fails.
- The station vocabulary leaves '' (no station) out and reserves id 0 for it (see `models.features`).

How the failures work, and serving: both checks count the bad values with an analyzer (tft.sum) and
assert the count is 0. After analysis the count is a constant, so the assertion fails while tf.Transform
writes the transform graph (AnalyzeDataset's CreateSavedModel step, an InvalidArgumentError naming the
problem) and can never fire at serving. A plain per-batch tf.debugging assertion would not do: in TF2
mode every traced assertion runs whichever outputs are asked for, and tf.Transform fills each raw feature
a client did not send with '' (or 0), which is not a label and not a valid track id. So at serving a
client may send only some features (say history ids and labels) and read the outputs derived from them;
unknown tracks and stations get the OOV ids, unknown labels UNKNOWN_LABEL_ID (-1).
"""
from __future__ import annotations

from typing import Callable, Mapping, Union

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from schema import contract

TensorLike = Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]

EXACT_TRACK_TOKEN = r"[^ \n\r]+"
"""Track ids the frequency vocabulary file stores and looks up exactly (see the module docstring)."""


def preprocessing_fn(inputs: Mapping[str, TensorLike]) -> dict[str, TensorLike]:
    """Maps one batch of labelled examples to model inputs (keys in models.features)."""
    raw = {key: _scalar(inputs[key]) for key in contract.EXAMPLE_SCALAR_FEATURES}
    raw.update({key: inputs[key] for key in contract.EXAMPLE_LIST_FEATURES})
    track_vocab, track_check = _track_vocabulary([raw[key] for key in features.TRACK_FEATURES])
    outputs = {
        features.transformed_name(key): _track_ids(_after(track_check, raw[key]), track_vocab)
        for key in features.TRACK_FEATURES
    }
    for key in features.LABEL_FEATURES:
        outputs[features.transformed_name(key)] = _map_values(_label_ids, raw[key])
    outputs[features.STATION_ID_XF] = _station_ids(raw[contract.EX_STATION_ID])
    outputs[features.USER_ID_XF] = raw[contract.EX_USER_ID]
    outputs[features.TARGET_TIMESTAMP_MS_XF] = raw[contract.EX_TARGET_TIMESTAMP_MS]
    return outputs


def _scalar(x: tf.Tensor) -> tf.Tensor:
    """[B, 1] -> [B]; fails if a row holds anything but exactly one value."""
    return tf.squeeze(x, axis=1)


def _values(x: TensorLike) -> tf.Tensor:
    """All values of a dense, sparse or ragged tensor, flattened."""
    if isinstance(x, tf.SparseTensor):
        return x.values
    if isinstance(x, tf.RaggedTensor):
        return x.flat_values
    return tf.reshape(x, [-1])


def _map_values(fn: Callable[[tf.Tensor], tf.Tensor], x: TensorLike) -> TensorLike:
    """Applies `fn` to the values of `x`, keeping its kind and row lengths."""
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, fn(x.values), x.dense_shape)
    if isinstance(x, tf.RaggedTensor):
        return x.with_flat_values(fn(x.flat_values))
    return fn(x)


def _fail_unless_none_in_analysed_data(bad: tf.Tensor, message: str) -> tf.Operation:
    """An assertion that the analysed data held no `bad` value, decided once, at analysis.

    The count is an analyzer, so when tf.Transform traces the final transform graph it is a constant and
    the assertion is decided right there: bad data fails the analysis, good data leaves an assertion that
    always holds, also at serving (where a per-batch check would trip over the '' tf.Transform feeds for
    features a client did not send; see the module docstring).
    """
    count = tft.sum(tf.cast(bad, tf.int64), reduce_instance_dims=True)
    return tf.debugging.assert_equal(count, tf.constant(0, tf.int64), message=message)


def _after(check: tf.Operation, x: TensorLike) -> TensorLike:
    """`x`, computed only once `check` passed."""
    with tf.control_dependencies([check]):
        return _map_values(tf.identity, x)


def _track_vocabulary(track_features: list[TensorLike]) -> tuple[tf.Tensor, tf.Operation]:
    """Analyses one vocabulary, with occurrence counts, over every track id of every feature.

    Returns the deferred vocabulary file and the check that every id could be stored exactly.
    """
    occurrences = tf.concat([_values(x) for x in track_features], axis=0)
    check = _fail_unless_none_in_analysed_data(
        tf.logical_not(tf.strings.regex_full_match(occurrences, EXACT_TRACK_TOKEN)),
        "analysed data holds track ids that are empty or contain a space, \\n or \\r",
    )
    return tft.vocabulary(occurrences, vocab_filename=features.TRACK_VOCAB, store_frequency=True), check


def _frequency_file_lookup(x: TensorLike, vocab_path: tf.Tensor) -> tuple[TensorLike, tf.Tensor]:
    """Looks tokens up in a "count token" vocabulary file (line number = id), with OOV buckets.

    tft.apply_vocabulary cannot read frequency files by itself; this is the table tf.Transform builds
    for compute_and_apply_vocabulary(store_frequency=True).
    """
    initializer = tf.lookup.TextFileInitializer(
        vocab_path,
        key_dtype=tf.string,
        key_index=1,
        value_dtype=tf.int64,
        value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        delimiter=" ",
    )
    table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=features.NUM_OOV_BUCKETS)
    return table.lookup(x), table.size()


def _track_ids(x: TensorLike, track_vocab: tf.Tensor) -> TensorLike:
    return tft.apply_vocabulary(
        x, track_vocab, num_oov_buckets=features.NUM_OOV_BUCKETS, lookup_fn=_frequency_file_lookup
    )


def _station_ids(stations: tf.Tensor) -> tf.Tensor:
    """NO_STATION -> NO_STATION_ID; real stations -> FIRST_STATION_ID + vocabulary id (OOV last)."""
    is_station = tf.not_equal(stations, features.NO_STATION)
    vocab = tft.vocabulary(tf.boolean_mask(stations, is_station), vocab_filename=features.STATION_VOCAB)
    ids = tft.apply_vocabulary(stations, vocab, num_oov_buckets=features.NUM_OOV_BUCKETS)
    no_station = tf.fill(tf.shape(ids), tf.constant(features.NO_STATION_ID, tf.int64))
    return tf.where(is_station, ids + features.FIRST_STATION_ID, no_station)


def _label_ids(labels: tf.Tensor) -> tf.Tensor:
    """Label names -> their index in contract.LABELS; others -> UNKNOWN_LABEL_ID, which analysis forbids."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(contract.LABELS), tf.range(features.NUM_LABELS, dtype=tf.int64)
        ),
        default_value=features.UNKNOWN_LABEL_ID,
    )
    ids = table.lookup(labels)
    check = _fail_unless_none_in_analysed_data(
        tf.equal(ids, features.UNKNOWN_LABEL_ID),
        f"analysed data holds label names that are not in {list(contract.LABELS)}",
    )
    return _after(check, ids)
