"""The columnar FeedbackLabeler's Beam steps: label record batches, group listeners, build, write files.

Why batches: the per-play path (decode one tf.train.Example into a dict, validate, label, key, heap) spent
~240 µs of Python per play. Here a step sees thousands of plays at once:
1. `LabelFile` reads ExampleGen's files record by record with TF's C++ reader, decodes each batch into an
   Arrow RecordBatch (tfx_bsl's C++ decoder, as TFXIO does), validates and labels it with `schema.columnar`
   (contract's rules over arrays), and emits one record per (listener group, batch): the plays of the
   listeners hashed into that group (`listener_group`) as an Arrow RecordBatch in IPC bytes (`PLAYS`);
2. a GroupByKey brings each group's records together; `RecentPlays` keeps each listener's
   `max_events_per_user` most recent plays as it reads them (compacting whenever it holds twice what it kept
   last time), so a listener's memory stays bounded while every play is still counted (the cap's statistics);
3. `BuildExamples` sorts the group once with Arrow (`sorted_plays`), builds each listener's examples with
   `listener_arrays.build_sorted` into a columnar buffer, serializes whole buffers with tfx_bsl's C++ encoder
   and writes each buffer's examples of a split as one GZIP TFRecord file with TF's C++ writer into a staging
   folder; `place_files` then renames the files of the bundles that completed into the split folders.

What the shuffle carries matters (measured on the 1M-play log, docs/data-plane.md): one record per
(listener, batch) of Python lists was 200,000 records and per-record Beam work; a pickled RecordBatch per
(group, batch) costs twice the CPU of its IPC bytes; Beam's `WriteToTFRecord` (one element, frame and
Python compression per example) cost about 5 CPU seconds for 70,000 examples. The staged files follow
Beam's own sink pattern: temporary files per bundle, renamed when the pipeline commits.
"""
from __future__ import annotations

import collections
import itertools
import os
import uuid
import zlib
from typing import Any, Iterable, Iterator, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from apache_beam.transforms.window import GlobalWindows
from tfx_bsl.coders import example_coder
from tfx_bsl.public import tfxio

from components.feedback_labeler import listener_arrays, sequences
from schema import columnar, contract

METRICS_NAMESPACE = "FeedbackLabeler"
FLUSH_EXAMPLES = 20_000
"""Examples buffered before one call of the C++ encoder and one file per split (bounds the buffer's memory)."""
FILE_PREFIX = "data_tfrecord"
STAGING_DIR = ".staging"
"""Folder of the labelled Examples artifact where files are written before `place_files`; removed after."""

MIN_LISTENER_GROUPS = 64
"""Listeners are hashed into at least this many groups: the shuffle moves one record per (group, batch), not
one per (listener, batch), and each group's plays stay Arrow columns (compact in memory, moved as IPC bytes)."""
INPUT_BYTES_PER_GROUP = 32 * 2**20
"""Above MIN_LISTENER_GROUPS, one more group per this many bytes of ExampleGen's GZIP files (the 1M-play log's
are 33 MB), so a group, whose kept plays sit in one worker's memory while it is built, holds about a million
plays at most whatever the size of the log."""


def listener_groups(input_bytes: int) -> int:
    """How many listener groups a log of `input_bytes` (ExampleGen's files) is spread over."""
    return max(MIN_LISTENER_GROUPS, -(-int(input_bytes) // INPUT_BYTES_PER_GROUP))
PLAYS = pa.schema([("user", pa.large_string()), ("timestamp", pa.int64()), ("track", pa.large_string()),
                   ("station", pa.large_string()), ("label", pa.int8())])
"""The valid plays of a group of listeners as they cross the shuffle (label: `contract.LABEL_IDS`)."""


def listener_group(user: str, groups: int) -> int:
    """A listener's group among `groups`: stable across processes and runs (unlike Python's salted `hash`)."""
    return zlib.crc32(user.encode("utf-8")) % groups


class LabelFile(beam.DoFn):
    """One TFRecord file of tf.train.Examples -> (listener group, its `PLAYS` as Arrow IPC bytes) per group and
    batch; per-batch summaries.

    The file is read a batch at a time by TF's C++ record reader and decoded into an Arrow RecordBatch by
    tfx_bsl's C++ decoder (the pieces TFXIO's `TFExampleRecord` is made of; its `RecordBatches` adds a
    parallel interleave that cost 1.9x the CPU here, docs/data-plane.md), so no Python runs per record.
    ExampleGen's files are GZIP, which cannot be split within a file anyway: a file is the unit of parallel work.
    """

    QUARANTINE = "quarantine"  # one Counter of reasons per batch
    SUMMARY = "summary"  # one (first_ms, last_ms, set of track ids) per batch with a valid play

    def __init__(self, thresholds: contract.LabelThresholds, batch_size: int, groups: int) -> None:
        self._thresholds = thresholds
        self._batch_size = batch_size
        self._groups = groups
        self._decoder: Optional[Any] = None

    def setup(self) -> None:
        self._decoder = example_coder.ExamplesToRecordBatchDecoder()

    def process(self, path: str) -> Iterator[Any]:
        compression = "GZIP" if path.endswith(".gz") else ""  # as TFXIO decides
        # TF's C++ reader record by record: about half the CPU of tf.data's TFRecordDataset(...).batch(...)
        # (a string tensor per batch, then a numpy copy of it) and no second copy of the batch in memory.
        records = tf.compat.v1.io.tf_record_iterator(path, tf.io.TFRecordOptions(compression_type=compression))
        while chunk := list(itertools.islice(records, self._batch_size)):
            for batch in self._decoded(path, chunk):
                yield from self._label(batch)

    def _decoded(self, path: str, records: list[bytes]) -> list[pa.RecordBatch]:
        """One RecordBatch, or one per record when a feature's kind differs between records of the batch.

        The second case is for logs whose loose text columns give, say, `listen_ms` as int64 in one record and
        as text in another: each record keeps its own kinds and `schema.columnar` judges each value.
        """
        try:
            return [self._decoder.DecodeBatch(records)]
        except RuntimeError as mixed:
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, "batches_decoded_record_by_record").inc()
            batches = []
            for record in records:
                try:
                    batches.append(self._decoder.DecodeBatch([record]))
                except RuntimeError as error:
                    raise ValueError(f"{path}: a record is not a tf.train.Example ({error})") from mixed
            return batches

    def _label(self, batch: pa.RecordBatch) -> Iterator[Any]:
        checked = columnar.validate_batch(batch)
        reasons = collections.Counter(checked.reasons[~checked.valid].tolist())
        for reason, count in reasons.items():
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"quarantined_{reason}").inc(count)
        if reasons:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, reasons)
        valid = len(checked.user_id)
        if not valid:
            return
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "valid_plays").inc(valid)
        if checked.unknown_column_rows:
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_with_unknown_columns").inc(
                checked.unknown_column_rows)
        labels = checked.label_ids(self._thresholds)
        timestamps = checked.timestamp_ms
        yield beam.pvalue.TaggedOutput(
            self.SUMMARY, (int(timestamps.min()), int(timestamps.max()), set(checked.track_id.tolist())))
        users = pa.array(checked.user_id, pa.large_string())
        encoded = users.dictionary_encode()
        group_of_code = np.fromiter((listener_group(user, self._groups) for user in encoded.dictionary.to_pylist()),
                                    dtype=np.int64, count=len(encoded.dictionary))
        groups = group_of_code[encoded.indices.to_numpy()]
        order = np.argsort(groups, kind="stable")
        bounds = (np.flatnonzero(np.diff(groups[order])) + 1).tolist()
        plays = pa.RecordBatch.from_arrays(
            [users, pa.array(timestamps, pa.int64()), pa.array(checked.track_id, pa.large_string()),
             pa.array(checked.station_id, pa.large_string()), pa.array(labels.astype(np.int8), pa.int8())],
            schema=PLAYS)
        for start, stop in zip([0] + bounds, bounds + [valid]):
            # Arrow's IPC bytes: Beam moves bytes as they are (a pickled RecordBatch cost twice the CPU)
            yield int(groups[order[start]]), plays.take(pa.array(order[start:stop])).serialize().to_pybytes()


def most_recent(plays: pa.Table, cap: int) -> tuple[pa.RecordBatch, dict[str, int]]:
    """Each listener's `cap` plays with the largest (timestamp, track, station, label id), the most recent,
    in one batch; and per listener over the cap, how many plays were dropped."""
    plays = plays.combine_chunks()
    counts = pc.value_counts(plays["user"])
    over = pc.greater(counts.field("counts"), cap)
    batch = plays.to_batches()[0] if plays.num_rows else pa.RecordBatch.from_pylist([], schema=PLAYS)
    if not pc.any(over).as_py():
        return batch, {}
    dropped = dict(zip(pc.filter(counts.field("values"), over).to_pylist(),
                       (n - cap for n in pc.filter(counts.field("counts"), over).to_pylist())))
    order = pc.sort_indices(plays, sort_keys=[("user", "ascending"), ("timestamp", "descending"),
                                              ("track", "descending"), ("station", "descending"),
                                              ("label", "descending")])
    users = pc.take(plays["user"], order).combine_chunks().dictionary_encode().indices.to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    return batch.take(order.filter(pa.array(rank < cap))), dropped


def sorted_plays(plays: pa.RecordBatch) -> pa.RecordBatch:
    """Sorted by listener, then as `sequences` orders a listener's plays: (timestamp, track, station, label
    name). Arrow compares strings by their UTF-8 bytes, which is the order of Python's str."""
    ranks = pa.array(listener_arrays.RANK_OF_ID[plays.column("label").to_numpy()])
    keys = [(name, "ascending") for name in ("user", "timestamp", "track", "station", "rank")]
    return plays.take(pc.sort_indices(plays.append_column("rank", ranks), sort_keys=keys))


class RecentPlays:
    """One listener group's plays as they arrive: each listener keeps its `cap` most recent. The batches are
    compacted (`most_recent`) whenever they hold twice the rows of the last compaction (and over twice the
    cap), so a listener's plays in memory stay within about twice the cap while every play is still counted
    (the cap's statistics)."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0
        self._compacted_rows = 0
        self.dropped: dict[str, int] = {}
        """Per listener over the cap: plays dropped."""

    def add(self, plays: pa.RecordBatch) -> None:
        self._batches.append(plays)
        self._rows += plays.num_rows
        if self._rows > 2 * max(self._cap, self._compacted_rows):
            self._compact()

    def _compact(self) -> None:
        kept, dropped = most_recent(pa.Table.from_batches(self._batches, schema=PLAYS), self._cap)
        self._batches = [kept]
        self._rows = self._compacted_rows = kept.num_rows
        for user, count in dropped.items():
            self.dropped[user] = self.dropped.get(user, 0) + count

    def kept(self) -> pa.RecordBatch:
        """The most recent `cap` plays of every listener, in one batch."""
        self._compact()
        return self._batches[0]


class BuildExamples(beam.DoFn):
    """(listener group, its `PLAYS` batches as Arrow IPC bytes) -> staged example files as (split, path), and
    Counters of statistics. The group's plays are gathered by `RecentPlays` (the per-listener cap) first."""

    STATS = "stats"
    WRITTEN = "written"

    def __init__(self, params: sequences.LabelingParams, staging_uri: str) -> None:
        self._params = params
        self._staging_uri = staging_uri
        self._encoder: Optional[tfxio.RecordBatchToExamplesEncoder] = None

    def setup(self) -> None:
        self._encoder = tfxio.RecordBatchToExamplesEncoder()

    def start_bundle(self) -> None:
        self._buffer = listener_arrays.ExampleColumns()
        self._stats: collections.Counter = collections.Counter()

    def process(self, element: tuple[int, Iterable[bytes]], bounds: tuple[int, int]) -> Iterator[Any]:
        recent = RecentPlays(self._params.max_events_per_user)
        for serialized in element[1]:
            recent.add(pa.ipc.read_record_batch(pa.py_buffer(serialized), PLAYS))
        plays, dropped = recent.kept(), recent.dropped
        cutoffs = sequences.resolve_cutoffs(self._params, *bounds)
        plays = sorted_plays(plays)
        users = plays.column("user").dictionary_encode()
        names = users.dictionary.to_pylist()
        codes = users.indices.to_numpy()
        bounds = (np.flatnonzero(np.diff(codes)) + 1).tolist()
        timestamps = plays.column("timestamp").to_numpy()
        label_ids = plays.column("label").to_numpy().astype(np.int64)
        # numpy's tolist, not Arrow's to_pylist: the latter builds each value through an Arrow scalar (slow)
        tracks, stations = (plays.column(name).to_numpy(zero_copy_only=False).tolist() for name in ("track", "station"))
        for start, stop in zip([0] + bounds, bounds + [len(codes)]):
            listener_arrays.build_sorted(names[codes[start]], timestamps[start:stop], tracks[start:stop],
                                         stations[start:stop], label_ids[start:stop], self._params, cutoffs,
                                         self._buffer, self._stats)
            if self._buffer.rows >= FLUSH_EXAMPLES:
                yield from self._flush()
        if dropped:
            self._stats["capped/users"] += len(dropped)
            self._stats["capped/plays"] += sum(dropped.values())

    def _flush(self) -> Iterator[beam.pvalue.TaggedOutput]:
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "examples").inc(self._buffer.rows)
        for split, batch in self._buffer.record_batches().items():
            path = os.path.join(self._staging_uri, f"{split}-{uuid.uuid4().hex}.gz")
            with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                for record in self._encoder.encode(batch):
                    writer.write(record)
            yield beam.pvalue.TaggedOutput(self.WRITTEN, (split, path))
        self._buffer = listener_arrays.ExampleColumns()

    def finish_bundle(self) -> Iterator[beam.pvalue.TaggedOutput]:
        for output in self._flush():
            yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
        yield beam.pvalue.TaggedOutput(self.STATS, GlobalWindows.windowed_value(self._stats))


def output_name(index: int, count: int) -> str:
    """The name Beam's `WriteToTFRecord` gave the labeller's files (and TFX's ExampleGen gives its own)."""
    return f"{FILE_PREFIX}-{index:05d}-of-{count:05d}.gz"


def place_files(written: list[tuple[str, str]], split_uris: dict[str, str]) -> None:
    """Renames the staged files of every split into its folder, in the order of their paths; a split without
    examples gets one empty file, as `WriteToTFRecord` wrote. Safe to retry: a file already moved is skipped."""
    for split, split_uri in split_uris.items():
        paths = sorted(path for name, path in written if name == split)
        tf.io.gfile.makedirs(split_uri)
        if not paths:
            with tf.io.TFRecordWriter(os.path.join(split_uri, output_name(0, 1)), options="GZIP"):
                pass
        for index, path in enumerate(paths):
            target = os.path.join(split_uri, output_name(index, len(paths)))
            if tf.io.gfile.exists(path) or not tf.io.gfile.exists(target):
                tf.io.gfile.rename(path, target, overwrite=True)


class SummaryFn(beam.CombineFn):
    """Per-batch (first_ms, last_ms, track ids) -> the valid plays' time range and distinct tracks."""

    def create_accumulator(self) -> list:
        return [None, None, set()]

    def add_input(self, accumulator: list, summary: tuple[int, int, set]) -> list:
        first, last, tracks = summary
        accumulator[0] = first if accumulator[0] is None else min(accumulator[0], first)
        accumulator[1] = last if accumulator[1] is None else max(accumulator[1], last)
        accumulator[2] |= tracks
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        merged = self.create_accumulator()
        for accumulator in accumulators:
            if accumulator[0] is not None:
                self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator: list) -> dict[str, Any]:
        if accumulator[0] is None:
            return {"bounds": None, "tracks": 0}
        return {"bounds": (accumulator[0], accumulator[1]), "tracks": len(accumulator[2])}
