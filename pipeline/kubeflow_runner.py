"""Compiles `create_pipeline()` for Kubeflow Pipelines with TFX's KubeflowV2DagRunner (a KFP pipeline spec).

    python -m pipeline.kubeflow_runner --output music_retrieval.json --image REGISTRY/music-retrieval:TAG \\
        --data-root gs://BUCKET/listening_logs --pipeline-root gs://BUCKET/pipeline_root \\
        [--serving-base gs://BUCKET/serving] [--beam-runner DataflowRunner --beam-arg=--project=P ...] \\
        [--set key=value ...]

The spec runs every component in the image built from the Dockerfile (the project lives at
`configs.IMAGE_PROJECT_DIR` there, so the curated schemas are read from the image). Scheduled runs use
`configs.KUBEFLOW_OVERRIDES` (a week of daily spans, warm start, the multi-worker strategy), then `--set`.
Schedule the compiled spec with `python -m pipeline.schedule`.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from pipeline import configs, library_logs
from schema import contract

if TYPE_CHECKING:
    from tfx import v1 as tfx

DIRECT_RUNNER = "DirectRunner"
BEAM_RUNNERS = (DIRECT_RUNNER, "DataflowRunner", "FlinkRunner", "SparkRunner")
REQUIRED_BEAM_ARGS = {"DataflowRunner": ("--project", "--region", "--temp_location")}
"""Flags a runner cannot start without; missing ones fail the compile instead of the scheduled run."""
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
PIPELINE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


def image_path(local_path: pathlib.Path) -> str:
    """Where a project file sits inside the image."""
    return f"{configs.IMAGE_PROJECT_DIR}/{local_path.resolve().relative_to(PROJECT_ROOT).as_posix()}"


def beam_args(runner: str, image: str, config: configs.PipelineConfig, extra: Sequence[str]) -> list[str]:
    """Beam arguments for the runner: DirectRunner keeps the config's in-pod settings; distributed runners get
    the project image as their worker SDK container (it carries Beam's boot entrypoint) unless `extra` names one."""
    if runner not in BEAM_RUNNERS:
        raise ValueError(f"--beam-runner must be one of {BEAM_RUNNERS}, got {runner!r}")
    if runner == DIRECT_RUNNER:
        return config.beam_pipeline_args(extra)
    flags = {arg.split("=", 1)[0] for arg in extra}
    missing = [flag for flag in REQUIRED_BEAM_ARGS.get(runner, ()) if flag not in flags]
    if missing:
        raise ValueError(f"{runner} needs {', '.join(missing)}: add --beam-arg={missing[0]}=... for each")
    defaults = {
        "DataflowRunner": [f"--sdk_container_image={image}"],
        "FlinkRunner": ["--environment_type=DOCKER", f"--environment_config={image}"],
        "SparkRunner": ["--environment_type=DOCKER", f"--environment_config={image}"],
    }[runner]
    defaults = [arg for arg in defaults if arg.split("=", 1)[0] not in flags]
    return [f"--runner={runner}", *defaults, *extra]


def compile_spec(
    output: pathlib.Path,
    image: str,
    data_root: str,
    pipeline_root: str,
    config: configs.PipelineConfig,
    serving_base: Optional[str] = None,
    beam_runner: str = DIRECT_RUNNER,
    extra_beam_args: Sequence[str] = (),
    pipeline_name: str = configs.KUBEFLOW_PIPELINE_NAME,
) -> tfx.dsl.Pipeline:
    """Writes the pipeline spec JSON to `output`; returns the pipeline it compiled (for inspection)."""
    from tfx import v1 as tfx  # here, not at the top: `--help` and argument errors answer without TensorFlow

    from pipeline.pipeline import create_pipeline

    if not PIPELINE_NAME_PATTERN.fullmatch(pipeline_name):
        raise ValueError(f"pipeline name {pipeline_name!r} must match {PIPELINE_NAME_PATTERN.pattern} (KFP's rule)")
    pipeline = create_pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        data_root=data_root,
        config=config,
        serving_base=serving_base or os.path.join(pipeline_root, configs.SERVING_DIR),
        beam_pipeline_args=beam_args(beam_runner, image, config, extra_beam_args),
        schema_path=image_path(contract.SCHEMA_PATH),
        labeled_schema_path=image_path(contract.LABELED_SCHEMA_PATH),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image, use_pipeline_spec_2_1=True),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    runner.run(pipeline, write_out=True)
    return pipeline


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.kubeflow_runner", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=pathlib.Path, required=True, help="pipeline spec JSON to write")
    parser.add_argument("--image", required=True, help="container image built from the Dockerfile (registry/name:tag)")
    parser.add_argument("--data-root", required=True,
                        help="URI of the listening logs, one span-N/ folder per day (e.g. gs://bucket/logs)")
    parser.add_argument("--pipeline-root", required=True, help="URI for the pipeline's artifacts (e.g. gs://bucket/root)")
    parser.add_argument("--serving-base", help="URI the Pushers push to (default: PIPELINE_ROOT/serving)")
    parser.add_argument("--pipeline-name", default=configs.KUBEFLOW_PIPELINE_NAME,
                        help="KFP pipeline name: lower-case letters, digits and dashes")
    parser.add_argument("--beam-runner", default=DIRECT_RUNNER, choices=BEAM_RUNNERS,
                        help="where the Beam components run (default: DirectRunner inside each component's pod)")
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=[], metavar="ARG",
                        help="extra Beam pipeline argument, e.g. --beam-arg=--region=europe-west1 (repeatable)")
    configs.add_settings_argument(parser, note=f" on top of {', '.join(configs.KUBEFLOW_OVERRIDES)}")
    parser.add_argument("--verbose", action="store_true",
                        help="print TensorFlow/TFX/absl log lines here instead of into OUTPUT's name + .library.log")
    return parser.parse_args(argv)


def library_log_path(output: pathlib.Path) -> pathlib.Path:
    """Beside the spec: music_retrieval.json -> music_retrieval.library.log."""
    return output.with_name(output.stem + ".library.log")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = configs.kubeflow_config(args.settings)
        with library_logs.library_output(library_log_path(args.output), args.verbose):
            compile_spec(args.output, args.image, args.data_root, args.pipeline_root, config, args.serving_base,
                         args.beam_runner, args.beam_args, args.pipeline_name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (image {args.image}); schedule it with "
          f"python -m pipeline.schedule --spec {args.output} --cron '0 3 * * *' --host KFP_URL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
