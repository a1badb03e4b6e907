"""The hand-written log (the labeller executor test's plays, plus rows that break the contract) and the ways the
pipeline tests run it: the whole pipeline (tests/conftest.py's session fixture `hand_log_run`, shared by the
labelling and portable-runner tests) or create_pipeline's components up to Transform only (run_through)."""
from __future__ import annotations

import pathlib
from typing import Sequence

import pandas as pd

from pipeline import configs, local_runner, run_outputs
from schema import contract
from tests.test_feedback_labeler_executor import MIN, PLAYS, T0, read_split, strings

SETTINGS = [f"eval_cutoff={T0 + 50 * MIN}", f"test_cutoff={T0 + 92 * MIN}", "max_history=3",
            "hard_negative_window_ms=600000", "epochs=2", "serving_top_k=1", "serving_max_exclusions=1"]
"""The hand-written log's examples hold five tracks: K + E + max_history must fit in them."""

LAST_BEAM_COMPONENT = "Transform"
"""The last Beam stage of create_pipeline: the Trainer and after are not Beam stages."""


def hand_log() -> pd.DataFrame:
    """The executor test's plays as a CSV log, plus rows that break the contract."""
    rows = [
        {contract.USER_ID: u, contract.TRACK_ID: t, contract.STATION_ID: s, contract.TIMESTAMP_MS: T0 + minutes * MIN,
         contract.LISTEN_MS: listen, contract.TRACK_MS: 200_000, contract.FEEDBACK: feedback}
        for u, t, s, minutes, listen, feedback in PLAYS
    ]
    rows.append({contract.USER_ID: "", contract.TRACK_ID: "t", contract.TIMESTAMP_MS: T0})
    rows.append({contract.USER_ID: "u9", contract.TRACK_ID: "t", contract.TIMESTAMP_MS: T0, contract.FEEDBACK: "meh"})
    return pd.DataFrame(rows)


def labelled(result: local_runner.RunResult) -> dict[str, list[tuple]]:
    """Every labelled example as a comparable tuple, per split, in a stable order."""
    uri = result.outputs["FeedbackLabeler"]["labeled_examples"][0]
    keys = contract.EXAMPLE_SCALAR_FEATURES[:-1] + contract.EXAMPLE_LIST_FEATURES
    return {
        split: sorted(tuple(tuple(strings(e, key)) for key in keys) for e in read_split(uri, split))
        for split in contract.SPLITS
    }


def run_through(data: pathlib.Path, root: pathlib.Path, beam_args: Sequence[str] = (),
                extra_settings: Sequence[str] = ()) -> local_runner.RunResult:
    """create_pipeline's components up to LAST_BEAM_COMPONENT (and those it needs), run by LocalDagRunner.

    For tests about the Beam stages alone: the Trainer and everything after it would add minutes and no Beam."""
    from tfx import v1 as tfx
    from tfx.dsl.components.base import executor_spec
    from tfx.orchestration.pipeline import RunOptions

    from pipeline.pipeline import create_pipeline

    config = configs.with_overrides(configs.PipelineConfig(), [*SETTINGS, *extra_settings])
    root = root.resolve()
    full = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME, pipeline_root=str(root / configs.PIPELINE_ROOT_DIR),
        data_root=str(data.resolve()), config=config, serving_base=str(root / configs.SERVING_DIR),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / configs.METADATA_FILE)),
        beam_pipeline_args=config.beam_pipeline_args(beam_args),
    )
    (last,) = [c for c in full.components if c.id == LAST_BEAM_COMPONENT]
    ran, todo = [], [last]
    while todo:
        node = todo.pop()
        if node not in ran:
            ran.append(node)
            todo.extend(node.upstream_nodes)
    local_runner.export_project_path()
    # TFX's partial run: LAST_BEAM_COMPONENT and everything upstream of it, nothing downstream.
    tfx.orchestration.LocalDagRunner().run(full, run_options=RunOptions(to_nodes=[LAST_BEAM_COMPONENT]))
    store = run_outputs.sqlite_store(root / configs.METADATA_FILE)
    beam_stages = sorted(c.id for c in ran if isinstance(c.executor_spec, executor_spec.BeamExecutorSpec))
    return local_runner.RunResult(run_outputs.latest_run_outputs(store), [], {}, root / configs.SERVING_DIR,
                                  {stage: "" for stage in beam_stages}, [])
