"""The evaluator's test sample: a split at or below the cap is read whole and in order; above it, exactly the
cap, uniform, and the same for the same seed; and the standard errors it reports are the textbook ones."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from models import evaluation, inputs


def write_split(folder: pathlib.Path, files: int, per_file: int) -> list[bytes]:
    """Gzip TFRecord files of distinct records (each ends in zero bytes, which a numpy 'S' array would drop)."""
    folder.mkdir(parents=True)
    written = []
    for number in range(files):
        with tf.io.TFRecordWriter(str(folder / f"part-{number:02d}.gz"), options="GZIP") as writer:
            for row in range(per_file):
                record = f"file {number} row {row}".encode() + b"\x00\x00"
                writer.write(record)
                written.append(record)
    return written


def sampled(folder: pathlib.Path, cap: int, seed: int) -> inputs.RecordSample:
    return inputs.sample_records(str(folder / "*"), cap, seed)


def read_back(sample: inputs.RecordSample) -> list[bytes]:
    return list(sample.dataset().as_numpy_iterator())


def test_a_split_at_or_below_the_cap_is_read_whole_in_file_order(tmp_path):
    written = write_split(tmp_path / "split", files=3, per_file=1500)  # more than one read batch of 4096
    for cap in (len(written), len(written) + 1, 100_000):
        sample = sampled(tmp_path / "split", cap, seed=7)
        assert not sample.sampled and sample.total == len(written)
        assert read_back(sample) == written


def test_above_the_cap_exactly_the_cap_distinct_in_file_order_and_fixed_by_the_seed(tmp_path):
    written = write_split(tmp_path / "split", files=3, per_file=3000)
    position = {record: index for index, record in enumerate(written)}
    first = sampled(tmp_path / "split", 1000, seed=7)
    assert first.sampled and first.total == len(written) == 9000
    records = read_back(first)
    assert len(records) == len(set(records)) == 1000
    positions = [position[record] for record in records]  # every record is one the files hold, unchanged
    assert positions == sorted(positions)
    assert read_back(sampled(tmp_path / "split", 1000, seed=7)) == records
    assert read_back(sampled(tmp_path / "split", 1000, seed=8)) != records
    # uniform: each file (a third of the split) holds about a third of the sample (binomial sd ~15)
    per_file = np.bincount(np.asarray(positions) // 3000, minlength=3)
    assert np.all(np.abs(per_file - 1000 / 3) < 60), per_file


def test_a_cap_below_one_is_refused(tmp_path):
    write_split(tmp_path / "split", files=1, per_file=3)
    with pytest.raises(ValueError, match="max_records"):
        sampled(tmp_path / "split", 0, seed=0)


def collected(ranks: list[float], wins: list[float], pairs: list[int]) -> evaluation.Collected:
    n = len(ranks)
    empty = np.zeros((n, 1))
    return evaluation.Collected(
        user_ids=np.arange(n), target_ids=np.zeros(n, dtype=np.int64), ranks=np.asarray(ranks, dtype=np.float64),
        pair_wins=np.asarray(wins, dtype=np.float64), pair_counts=np.asarray(pairs), top_ids=empty,
        history_lengths=np.zeros(n), history_skips=np.zeros(n), negative_ranks=np.full(n, np.inf),
        negative_ids=empty, negative_mask=empty.astype(bool), disliked={})


def test_sampling_standard_errors_are_zero_for_the_whole_split_and_textbook_for_a_sample():
    sample = collected(ranks=[0, 5, 200, 300], wins=[1, 0, 2, 1], pairs=[1, 1, 2, 2])
    assert evaluation.sampling_standard_errors(sample, total=4) == {"pairwise_accuracy": 0.0, "recall_at_100": 0.0}
    errors = evaluation.sampling_standard_errors(sample, total=40)
    correction = 1 - 4 / 40
    hits = np.array([1, 1, 0, 0.0])  # recall@100: two of four ranks are below 100
    assert errors["recall_at_100"] == pytest.approx(np.sqrt(hits.var(ddof=1) / 4 * correction))
    accuracy = 4 / 6  # wins / pairs; the ratio's linearised residuals are (wins - accuracy * pairs) / mean pairs
    residuals = (np.array([1, 0, 2, 1]) - accuracy * np.array([1, 1, 2, 2])) / 1.5
    assert errors["pairwise_accuracy"] == pytest.approx(np.sqrt(residuals.var(ddof=1) / 4 * correction))
    assert errors["pairwise_accuracy"] > 0
