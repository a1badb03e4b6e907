"""ExampleGen on the same simulated log written as CSV and as Parquet, side by side (issue 14).

Why: ExampleGen parsed CSV for 235 s of a 1,107 s pipeline run on 1M plays (benchmarks/RESULTS.md §5). The
simulator writes Parquet too; this measures what reading it instead saves. Each format gets a one-component
TFX pipeline (the pipeline's own `build_example_gen`: span window executor, DirectRunner in-process, SQLite
MLMD, no cache) run in this process, one after the other on the same plays. It prints wall seconds, CPU
seconds (this process and its children), plays per second and the ratios Parquet / CSV, and checks both
wrote the same number of tf.train.Examples. Timings on a shared machine are noisy: compare the two formats
of one run, not separate runs.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

from pipeline import configs
from schema import span_folders

FORMATS = ("csv", "parquet")


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (TFX builds a package in a subprocess)."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_example_gen(data_root: pathlib.Path, input_format: str, root: pathlib.Path) -> dict[str, Any]:
    """ExampleGen alone over every span of `data_root`; its wall and CPU seconds and the Examples it wrote."""
    import tensorflow as tf
    from tfx import v1 as tfx

    from pipeline import pipeline as pipeline_lib

    days = len(span_folders.numbers(data_root))
    config = configs.with_overrides(configs.PipelineConfig(), [f"spans=1-{days}", "enable_cache=false"])
    example_gen = pipeline_lib.build_example_gen(str(data_root), input_format, config)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=f"ingestion-{input_format}", pipeline_root=str(root / "pipeline"), components=[example_gen],
        enable_cache=False, beam_pipeline_args=config.beam_pipeline_args(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")),
    )
    cpu, began = cpu_seconds(), time.perf_counter()
    tfx.orchestration.LocalDagRunner().run(pipeline)
    wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    files = [str(path) for path in (root / "pipeline").rglob("*.gz") if path.parent.name.startswith("Split-")]
    examples = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return {"format": input_format, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "examples": examples}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingestion", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="plays in the simulated log")
    parser.add_argument("--users", type=int, default=4_000, help="listeners")
    parser.add_argument("--tracks", type=int, default=10_000, help="tracks in the catalog")
    parser.add_argument("--days", type=int, default=7, help="simulated days (one span each)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--out", type=pathlib.Path, default=None, metavar="DIR",
                        help="new directory for the logs, the runs and ingestion.json (default: a temporary one)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from listening_logs import simulate

    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="ingestion-"))
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for input_format in FORMATS:
        data = out / f"log-{input_format}"
        simulate.simulate(simulate.SimulationConfig(users=args.users, tracks=args.tracks, events=args.events,
                                                    days=args.days, seed=args.seed, file_format=input_format), data)
        run = run_example_gen(data, input_format, out / f"run-{input_format}")
        run["plays_per_s"] = round(args.events / run["wall_s"], 1)
        print(json.dumps(run), file=sys.stderr, flush=True)
        runs.append(run)
    csv, parquet = runs
    result = {
        "sizes": vars(args) | {"out": str(out)},
        "runs": runs,
        "parquet_over_csv_wall": round(parquet["wall_s"] / csv["wall_s"], 3),
        "parquet_over_csv_cpu": round(parquet["cpu_s"] / csv["cpu_s"], 3),
        "same_examples": csv["examples"] == parquet["examples"],
    }
    (out / "ingestion.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if not result["same_examples"]:
        print(f"CSV and Parquet ExampleGen wrote different numbers of examples: {runs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
