"""Warm start copies a blessed model's weights into a new model whose vocabularies differ, row by raw id."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from models import export_format, exported, features, memory, params, trainer, warm_start
from models.towers import TowerConfig, build_towers
from schema import contract

BASE_TRACKS = ["a", "b", "c"]
BASE_STATIONS = ["s1", "s2"]
NEW_TRACKS = ["c", "d", "a", "e"]
NEW_STATIONS = ["s2", "s3"]


def tower_config(tracks: list[str], stations: list[str], **changes) -> TowerConfig:
    config = TowerConfig(num_track_ids=len(tracks) + features.NUM_OOV_BUCKETS,
                         num_station_ids=features.FIRST_STATION_ID + len(stations) + features.NUM_OOV_BUCKETS,
                         embedding_dim=8, num_layers=1, num_heads=2, max_history=4, dropout=0.0)
    return dataclasses.replace(config, **changes)


@pytest.fixture
def base_export(tmp_path: pathlib.Path):
    """A Trainer-like export of a trained (here: randomly initialised) model over BASE_* vocabularies."""
    tf.keras.utils.set_random_seed(1)
    config = tower_config(BASE_TRACKS, BASE_STATIONS)
    query, candidate = build_towers(config)
    warm_start.build(query, candidate, config)
    export = tmp_path / "base"
    export.mkdir()
    (export / export_format.MODEL_CONFIG_FILE).write_text(json.dumps({"tower": dataclasses.asdict(config)}))
    trainer.write_lines(str(export / export_format.TRACK_VOCABULARY_FILE), BASE_TRACKS)
    trainer.write_lines(str(export / export_format.STATION_VOCABULARY_FILE), BASE_STATIONS)
    warm_start.write_weights(query, candidate, str(export))
    return export, query, candidate


def test_shared_tracks_and_stations_keep_their_rows_and_other_weights_are_copied(base_export):
    export, base_query, base_candidate = base_export
    tf.keras.utils.set_random_seed(2)
    config = tower_config(NEW_TRACKS, NEW_STATIONS)
    query, candidate = build_towers(config)
    result = warm_start.apply(query, candidate, config, str(export),
                              exported.Vocabularies(NEW_TRACKS, NEW_STATIONS))

    base_tracks, new_tracks = base_query.track_table.numpy(), query.track_table.numpy()
    np.testing.assert_array_equal(new_tracks[0], base_tracks[BASE_TRACKS.index("c")])
    np.testing.assert_array_equal(new_tracks[2], base_tracks[BASE_TRACKS.index("a")])
    assert not any(np.allclose(new_tracks[1], row) for row in base_tracks), "'d' is new: it keeps its own row"
    base_stations, new_stations = base_query.station_table.numpy(), query.station_table.numpy()
    np.testing.assert_array_equal(new_stations[features.FIRST_STATION_ID],
                                  base_stations[features.FIRST_STATION_ID + BASE_STATIONS.index("s2")])
    np.testing.assert_array_equal(new_stations[features.NO_STATION_ID], base_stations[features.NO_STATION_ID])
    tables = {id(query.track_table), id(query.station_table)}
    for new, base in zip(query.weights, base_query.weights):
        if id(new) not in tables:
            np.testing.assert_array_equal(new.numpy(), base.numpy(), err_msg=new.name)
    assert (result.tracks_copied, result.tracks_new) == (2, 3)  # c, a copied; d, e and the OOV row fresh
    assert result.stations_copied == 2  # no-station and s2
    assert result.base_model == str(export)


def test_changed_architecture_is_refused_with_the_setting_to_change(base_export):
    export, _, _ = base_export
    config = tower_config(NEW_TRACKS, NEW_STATIONS, embedding_dim=16)
    query, candidate = build_towers(config)
    with pytest.raises(ValueError, match="embedding_dim 8 -> 16.*warm_start=false"):
        warm_start.apply(query, candidate, config, str(export), exported.Vocabularies(NEW_TRACKS, NEW_STATIONS))
    gained = tower_config(NEW_TRACKS, NEW_STATIONS, history_gains="signed")
    query, candidate = build_towers(gained)
    with pytest.raises(ValueError, match="history_gains off -> signed.*warm_start=false"):
        warm_start.apply(query, candidate, gained, str(export), exported.Vocabularies(NEW_TRACKS, NEW_STATIONS))


def test_export_without_weights_is_a_clear_error(base_export):
    export, _, _ = base_export
    for path in (export / "weights").iterdir():
        path.unlink()
    config = tower_config(NEW_TRACKS, NEW_STATIONS)
    query, candidate = build_towers(config)
    with pytest.raises(FileNotFoundError, match="warm_start=false"):
        warm_start.apply(query, candidate, config, str(export), exported.Vocabularies(NEW_TRACKS, NEW_STATIONS))


def test_no_blessed_model_yet_means_a_cold_start(tmp_path):
    config = tower_config(NEW_TRACKS, NEW_STATIONS)
    query, candidate = build_towers(config)
    assert warm_start.maybe_apply(query, candidate, config, None, exported.Vocabularies(NEW_TRACKS, NEW_STATIONS)) is None
    with pytest.raises(FileNotFoundError, match="no Trainer export"):
        warm_start.maybe_apply(query, candidate, config, str(tmp_path), exported.Vocabularies(NEW_TRACKS, []))


def test_the_history_memory_offsets_carry_over_for_the_types_the_new_model_holds(tmp_path):
    export = tmp_path / "base"
    export.mkdir()
    offsets = {contract.LIKE: 0.4, contract.LISTEN: 0.0, contract.SKIP: -0.8, contract.DISLIKE: -2.0}
    (export / export_format.MODEL_CONFIG_FILE).write_text(json.dumps({export_format.HISTORY_MEMORY_KEY: offsets}))
    rejections = memory.HistoryMemory(params.DIRECT_REJECTIONS)
    assert warm_start.apply_memory(rejections, str(export)) == 2
    expected = {**offsets, contract.LIKE: 0.0}  # a type the new model holds at 0 stays there
    np.testing.assert_allclose(rejections.label_weights().numpy(), [expected[label] for label in contract.LABELS],
                               rtol=1e-6)
    every_type = memory.HistoryMemory(params.DIRECT_ALL)
    assert warm_start.apply_memory(every_type, str(export)) == 3
    assert warm_start.apply_memory(None, str(export)) == 0  # the new model has no memory term
    (export / export_format.MODEL_CONFIG_FILE).write_text(json.dumps({export_format.HISTORY_MEMORY_KEY: None}))
    fresh = memory.HistoryMemory(params.DIRECT_REJECTIONS)
    assert warm_start.apply_memory(fresh, str(export)) == 0  # the base had none: the offsets start at 0
    assert not fresh.label_weights().numpy().any()
