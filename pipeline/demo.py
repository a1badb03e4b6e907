"""The main job on built-in data: simulate a small listening log, then run the pipeline over all its days.

    python -m pipeline.demo --out DIR [--users N --tracks M --events E --days D --seed S] [--set key=value ...]

DIR/data holds the simulated log (with ground truth), DIR/run the pipeline's artifacts and MLMD store.
A DIR the demo wrote before is replaced; any other non-empty DIR is refused.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time
from typing import Sequence

from listening_logs import simulate
from pipeline import configs, local_runner

MARKER = ".written-by-pipeline-demo"
DEMO_SIZES = {"users": 400, "tracks": 3000, "events": 40_000, "days": 7, "seed": 7}


def prepare_out_dir(out: pathlib.Path) -> None:
    """Empties a folder this demo wrote before; refuses to touch anything else."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise SystemExit(f"error: {out} is not empty and was not written by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("This folder is replaced by each `make demo` run.\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder for the demo's data and run")
    for name, default in DEMO_SIZES.items():
        parser.add_argument(f"--{name}", type=int, default=default, help=f"simulator's --{name} (default {default})")
    configs.add_settings_argument(parser, note=" (the demo's default: spans=1-DAYS)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = configs.with_overrides(configs.PipelineConfig(spans=f"1-{args.days}"), args.settings)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    prepare_out_dir(args.out)
    data, run_root = args.out / "data", args.out / "run"

    started = time.perf_counter()
    sim_config = simulate.SimulationConfig(
        users=args.users, tracks=args.tracks, events=args.events, days=args.days, seed=args.seed
    )
    summary = simulate.simulate(sim_config, data)
    print(f"[1/2] simulated {summary['events']} plays of {summary['users']} listeners over {args.days} days "
          f"in {time.perf_counter() - started:.1f} s -> {data}")
    print(f"      labels: {json.dumps(summary['labels'])}; skip-only listeners: {summary['skip_only_users']}")

    started = time.perf_counter()
    print(f"[2/2] running the pipeline (spans {config.spans}) -> {run_root}", flush=True)
    result = local_runner.run(data, run_root, config)
    print(f"      finished in {time.perf_counter() - started:.1f} s")
    local_runner.print_report(result)
    return local_runner.EXIT_ANOMALIES if result.anomalies and config.fail_on_anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
