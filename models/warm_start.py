"""Warm start: a new model begins from the last blessed model's weights, though its vocabularies differ.

Each run's Transform numbers tracks and stations by its own vocabulary, so embedding rows are copied by raw id
(`exported.IdMap`): tracks and stations both runs know keep their learned rows, new ones keep their fresh
initialisation. Every other weight is copied as is; the architecture (dimension, layers, heads, history length)
must match, or the error says which setting to change. The Trainer writes the towers' weights as a TF
checkpoint into each export (`write_weights`) for this purpose. The history memory's offsets (models/memory.py)
come from the base model's model_config.json (`apply_memory`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from models import export_format, exported, features, memory
from models.towers import CandidateTower, QueryTower, TowerConfig, build_towers

ARCHITECTURE_FIELDS = ("embedding_dim", "num_layers", "num_heads", "max_history", "item_bias", "history_gains", "history_pooling",
                       "direct_feedback", "direct_feedback_scale")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What a warm start copied, recorded in the new model's model_config.json."""

    base_model: str
    tracks_copied: int
    tracks_new: int
    stations_copied: int
    stations_new: int
    variables_copied: int
    memory_offsets_copied: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_weights(query_tower: QueryTower, candidate_tower: CandidateTower, export_dir: str) -> None:
    tf.train.Checkpoint(query_tower=query_tower, candidate_tower=candidate_tower).write(
        os.path.join(export_dir, export_format.WEIGHTS_PREFIX))


def build(query_tower: QueryTower, candidate_tower: CandidateTower, config: TowerConfig) -> None:
    """Creates the towers' variables with one call on a padded dummy batch."""
    length = config.max_history
    query_tower({
        features.HISTORY_TRACK_IDS_XF: tf.zeros([1, length], tf.int64),
        features.HISTORY_LABELS_XF: tf.zeros([1, length], tf.int64),
        features.HISTORY_MASK: tf.ones([1, length], tf.bool),
        features.STATION_ID_XF: tf.zeros([1], tf.int64),
    }, training=False)
    candidate_tower(tf.zeros([1], tf.int64), training=False)


def export_dir_of(base_model: str) -> str:
    """The export folder inside a Trainer model artifact (or the folder itself)."""
    for candidate in (export_format.exported_model_dir(base_model), base_model):
        if tf.io.gfile.exists(os.path.join(candidate, export_format.MODEL_CONFIG_FILE)):
            return candidate
    raise FileNotFoundError(f"warm start: {base_model} holds no Trainer export ({export_format.MODEL_CONFIG_FILE})")


def load_base(export_dir: str) -> tuple[QueryTower, CandidateTower, TowerConfig, exported.Vocabularies]:
    if not tf.io.gfile.exists(os.path.join(export_dir, export_format.WEIGHTS_PREFIX + ".index")):
        raise FileNotFoundError(f"warm start: {export_dir} has no {export_format.WEIGHTS_PREFIX} checkpoint "
                                "(exported by an older Trainer); run once with --set warm_start=false")
    with tf.io.gfile.GFile(os.path.join(export_dir, export_format.MODEL_CONFIG_FILE)) as handle:
        config = TowerConfig(**json.load(handle)["tower"])
    query_tower, candidate_tower = build_towers(config)
    build(query_tower, candidate_tower, config)
    tf.train.Checkpoint(query_tower=query_tower, candidate_tower=candidate_tower).read(
        os.path.join(export_dir, export_format.WEIGHTS_PREFIX)).assert_existing_objects_matched()
    return query_tower, candidate_tower, config, exported.Vocabularies.read(export_dir)


def remap_rows(new_table: np.ndarray, base_table: np.ndarray, base_ids: np.ndarray, base_oov_id: int) -> int:
    """Rows of ids known to the base model (base_ids[i] != OOV) take the base row; returns how many did."""
    known = base_ids != base_oov_id
    new_table[known] = base_table[base_ids[known]]
    return int(known.sum())


def apply(query_tower: QueryTower, candidate_tower: CandidateTower, config: TowerConfig, base_model: str,
          vocabularies: exported.Vocabularies) -> WarmStart:
    """Copies the base model's weights into the (built or unbuilt) towers; see the module docstring."""
    export_dir = export_dir_of(base_model)
    base_query, base_candidate, base_config, base_vocabularies = load_base(export_dir)
    mismatched = [name for name in ARCHITECTURE_FIELDS if getattr(base_config, name) != getattr(config, name)]
    if mismatched:
        details = ", ".join(f"{name} {getattr(base_config, name)} -> {getattr(config, name)}" for name in mismatched)
        raise ValueError(f"warm start from {export_dir}: the architecture changed ({details}); "
                         "keep those settings or --set warm_start=false")
    build(query_tower, candidate_tower, config)
    id_map = exported.IdMap.between(reference=vocabularies, model=base_vocabularies)

    copied = dict(tracks=0, stations=0, variables=0)
    seen: set[int] = set()
    new_weights = [*query_tower.weights, *candidate_tower.weights]
    base_weights = [*base_query.weights, *base_candidate.weights]
    if len(new_weights) != len(base_weights):
        raise ValueError(f"warm start from {export_dir}: {len(base_weights)} weights there, {len(new_weights)} here")
    for new, base in zip(new_weights, base_weights):
        if id(new) in seen:
            continue
        seen.add(id(new))
        if new is query_tower.track_table:
            value = new.numpy()
            copied["tracks"] = remap_rows(value, base.numpy(), id_map.tracks, base_vocabularies.track_oov_id)
        elif new is candidate_tower.bias_table:
            value = new.numpy()
            remap_rows(value, base.numpy(), id_map.tracks, base_vocabularies.track_oov_id)
        elif new is query_tower.station_table:
            value = new.numpy()
            copied["stations"] = remap_rows(value, base.numpy(), id_map.stations, base_vocabularies.station_oov_id)
        elif tuple(new.shape) == tuple(base.shape):
            value = base.numpy()
        else:
            raise ValueError(f"warm start from {export_dir}: weight {new.name} is {tuple(new.shape)} here but "
                             f"{tuple(base.shape)} there")
        new.assign(value)
        copied["variables"] += 1
    result = WarmStart(
        base_model=export_dir,
        tracks_copied=copied["tracks"], tracks_new=len(id_map.tracks) - copied["tracks"],
        stations_copied=copied["stations"], stations_new=len(id_map.stations) - copied["stations"],
        variables_copied=copied["variables"],
    )
    log.info("warm start from %s: %d of %d track rows and %d of %d station rows copied, %d weights",
             export_dir, result.tracks_copied, len(id_map.tracks), result.stations_copied, len(id_map.stations),
             result.variables_copied)
    return result


def apply_memory(history_memory: Optional[memory.HistoryMemory], base_model: str) -> int:
    """The base model's history memory offsets (model_config.json) into `history_memory`; returns how many
    nonzero offsets it now holds (0 when either model has no memory term: the offsets then start at 0)."""
    if history_memory is None:
        return 0
    with tf.io.gfile.GFile(os.path.join(export_dir_of(base_model), export_format.MODEL_CONFIG_FILE)) as handle:
        weights = memory.weights_of(json.load(handle).get(export_format.HISTORY_MEMORY_KEY))
    if weights is None:
        return 0
    history_memory.assign_label_weights(weights)
    return int(np.count_nonzero(history_memory.label_weights().numpy()))


def maybe_apply(query_tower: QueryTower, candidate_tower: CandidateTower, config: TowerConfig,
                base_model: Optional[str], vocabularies: exported.Vocabularies) -> Optional[WarmStart]:
    """`apply` when there is a base model; None (a cold start, logged) before any model was blessed."""
    if not base_model:
        log.info("warm start requested but no blessed model exists yet: training from scratch")
        return None
    return apply(query_tower, candidate_tower, config, base_model, vocabularies)
