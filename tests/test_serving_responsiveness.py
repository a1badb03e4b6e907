"""Responsiveness where listeners feel it: a thumbs-down on a track, sent to the served model over gRPC, lowers
that track's artist's share of the top-10 against a plain listen of the same track (Wang et al., RecSys 2023).

The model is the shared trained pipeline's pushed brute-force export (`trained_pipeline` in conftest), served by a
real `python -m serving.server` on loopback and asked through `serving.client`. Brute force, not ScaNN: the same
served signature and request path, but an exact top-10, so the number is the model's. The drop is a few
thousandths, and ScaNN's randomised searcher build alone moved it between -0.0025 and +0.00125 on one model.
The artists come from the simulated log's `catalog/tracks.csv`. Also checks that the same pipeline's
RetrievalEvaluator reported responsiveness.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from tensorflow_serving.apis import get_model_status_pb2

from components.retrieval_evaluator import evaluate
from models import responsiveness as rsp
from models.exported import ExportedModel
from pipeline import configs
from pipeline.demo_request import read_log
from reports.json_safe import json_safe
from schema import contract
from serving.client import RecommendationClient
from tests import serving_testing as st

pytestmark = pytest.mark.pipeline

LISTENERS = 80
"""Listeners probed: the per-listener share changes are 0 or ±0.1 steps, so the mean needs many of them."""
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
K = rsp.K
POSITIVE = (contract.LIKE, contract.LISTEN)


def probes(data_dir: pathlib.Path, listeners: int, max_history: int) -> list[tuple[list[tuple[str, str]], str]]:
    """For the busiest listeners: (their max_history - 1 plays before their newest like or listen, that track).

    The probe is a track the listener really went on to play after that history, as the evaluator's probe is
    the test example's target; with the probe appended the history is exactly max_history tokens long."""
    log = read_log(data_dir)
    log = log.assign(label=[contract.LABELS[i] for i in contract.label_ids(
        log[contract.FEEDBACK].to_numpy(), pd.to_numeric(log[contract.LISTEN_MS], errors="coerce").to_numpy(),
        pd.to_numeric(log[contract.TRACK_MS], errors="coerce").to_numpy())])
    chosen = []
    for user in log[contract.USER_ID].value_counts().index[:listeners]:
        plays = log[log[contract.USER_ID] == user].sort_values(contract.TIMESTAMP_MS, kind="stable")
        positive = np.nonzero(plays["label"].isin(POSITIVE).to_numpy())[0]
        if not len(positive) or positive[-1] == 0:
            continue
        last = positive[-1]
        before = plays.iloc[max(0, last - (max_history - 1)):last]
        chosen.append((list(zip(before[contract.TRACK_ID], before["label"])), plays[contract.TRACK_ID].iloc[last]))
    return chosen


@pytest.fixture(scope="module")
def artists(trained_pipeline) -> dict[str, str]:
    artist_of, source = rsp.read_artist_by_track(str(trained_pipeline.data))
    assert artist_of is not None and source.endswith("tracks.csv"), source
    return artist_of


def test_a_served_thumbs_down_lowers_the_disliked_artists_share_of_the_top_10(trained_pipeline, artists, tmp_path):
    exports = st.Exports.from_run(trained_pipeline.result)
    max_history = configs.with_overrides(configs.PipelineConfig(), trained_pipeline.settings).max_history
    chosen = probes(trained_pipeline.data, LISTENERS, max_history)
    assert len(chosen) >= LISTENERS // 2
    base = st.free_base_path(tmp_path)
    st.copy_version(exports.brute_force, base, 1)
    listen_shares, dislike_shares, overlaps = [], [], []
    with st.ServerProcess(["--model_name", st.MODEL_NAME, "--model_base_path", str(base)], tmp_path / "server.log",
                          rest=False) as server:
        server.wait_for_ports()
        server.wait_for_state(1, AVAILABLE, st.MODEL_NAME, timeout_s=120)
        with RecommendationClient(server.target, st.MODEL_NAME, timeout_s=30) as client:
            for history, probe in chosen:
                exclude = list(dict.fromkeys([probe] + [track for track, _ in history]))  # same in both requests
                tops = {}
                for label in (contract.LISTEN, contract.DISLIKE):
                    answer = client.recommend(history + [(probe, label)], exclude=exclude, k=K)
                    tops[label] = [item["track_id"] for item in answer["recommendations"]]
                    assert len(tops[label]) == K and probe not in tops[label]
                share = {label: np.mean([artists.get(track) == artists[probe] for track in ids])
                         for label, ids in tops.items()}
                listen_shares.append(share[contract.LISTEN])
                dislike_shares.append(share[contract.DISLIKE])
                overlaps.append(len(set(tops[contract.LISTEN]) & set(tops[contract.DISLIKE])) / K)
    drop = float(np.mean(listen_shares) - np.mean(dislike_shares))
    print(f"served responsiveness over {len(chosen)} listeners: artist share after a listen "
          f"{np.mean(listen_shares):.3f}, after a dislike {np.mean(dislike_shares):.3f}, drop {drop:.3f}, "
          f"top-{K} overlap {np.mean(overlaps):.2f}")
    assert drop > 0, (listen_shares, dislike_shares)


def test_the_evaluator_reports_responsiveness_and_the_catalog_gives_the_artist_drop(trained_pipeline, artists):
    evaluation_dir = pathlib.Path(trained_pipeline.result.outputs["RetrievalEvaluator"]["evaluation"][0])
    reported = json.loads((evaluation_dir / "evaluation.json").read_text())["responsiveness"]
    assert (reported["k"], reported["neighbours"], reported["probe"]) == (K, rsp.NEIGHBOURS, "target")
    assert 0 < reported["queries"] <= rsp.MAX_QUERIES
    assert reported["neighbour_share_drop"] is not None
    assert reported["artist_share_drop"] is None and "artist_id" in reported["artist_note"]  # not in its inputs
    assert "<h2>Responsiveness</h2>" in (evaluation_dir / "evaluation.html").read_text()

    # the same measurement with the catalog's artists, as experiments can pass them
    outputs = trained_pipeline.result.outputs
    model = ExportedModel.load(outputs["Trainer"]["model"][0])
    data = evaluate.RunData(outputs["Transform"]["transform_graph"][0], outputs["Transform"]["transformed_examples"][0])
    measured = evaluate.responsiveness_of(model, data, artist_by_track=artists)
    print("evaluator responsiveness:", json.dumps(json_safe(measured)))
    assert measured["neighbour_share_drop"] == pytest.approx(reported["neighbour_share_drop"])
    assert measured["artist_queries"] == measured["queries"] == reported["queries"]
    assert measured["artist_share_drop"] is not None
