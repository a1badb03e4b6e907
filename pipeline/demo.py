"""The main job on built-in data: simulate a listening log, run the pipeline (through the Pushers), then serve
the pushed model over gRPC on loopback and ask it for one simulated listener's recommendations.

    python -m pipeline.demo --out DIR [--users N --tracks M --events E --days D --seed S] [--set key=value ...]

DIR/data holds the simulated log (with ground truth), DIR/run the pipeline's artifacts, MLMD store and
serving/ directory, DIR/server.log the server's output, DIR/library.log the log lines of TensorFlow, TFX, Beam
and absl (--verbose prints them instead). A DIR the demo wrote before is replaced; any other
non-empty DIR is refused. Exit status: 0 with recommendations, 1 when the model was not blessed (the reasons
are printed), 3 on anomalies with fail_on_anomalies.
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
from models.serving_params import SCANN
from pipeline import configs, library_logs, local_runner
from schema import contract

MARKER = ".written-by-pipeline-demo"
SERVER_LOG = "server.log"
EXIT_NOT_BLESSED = 1
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
    parser.add_argument("--verbose", action="store_true", help=library_logs.VERBOSE_HELP + " (--out)")
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
    print(f"[1/3] simulated {summary['events']} plays of {summary['users']} listeners over {args.days} days "
          f"in {time.perf_counter() - started:.1f} s -> {data}")
    print(f"      labels: {json.dumps(summary['labels'])}; skip-only listeners: {summary['skip_only_users']}")

    started = time.perf_counter()
    quiet = "" if args.verbose else f"; TensorFlow/TFX/Beam output: {args.out / library_logs.LOG_FILE}"
    print(f"[2/3] running the pipeline (spans {config.spans}) -> {run_root}{quiet}", flush=True)
    with library_logs.library_output(args.out / library_logs.LOG_FILE, args.verbose):
        result = local_runner.run(data, run_root, config)
    print(f"      finished in {time.perf_counter() - started:.1f} s")
    local_runner.print_report(result)
    if result.anomalies and config.fail_on_anomalies:
        return local_runner.EXIT_ANOMALIES
    return serve_and_ask(result, config, data, args.out, args.verbose)


def serve_and_ask(result: local_runner.RunResult, config: configs.PipelineConfig, data: pathlib.Path,
                  out: pathlib.Path, verbose: bool = False) -> int:
    """Step 3: the gRPC server over the pushed ScaNN model, one client request, the answer judged by the truth."""
    # Imported here, not at the top, so that `--help` and argument errors answer without TensorFlow.
    from pipeline import demo_request
    from pipeline.pipeline import PUSHER_IDS

    pusher = PUSHER_IDS[SCANN]
    if not result.pushed.get(pusher):
        print("[3/3] nothing to serve: the model was not blessed (the evaluator's reasons are above)")
        return EXIT_NOT_BLESSED
    model_name = configs.SERVED_MODEL_NAMES[SCANN]
    log = demo_request.read_log(data)
    listener = demo_request.keenest_listener(log, config.max_history)
    started = time.perf_counter()
    print(f"[3/3] serving {result.pushed[pusher]} with `python -m serving.server` on loopback "
          f"(log: {out / SERVER_LOG}); asking for listener {listener.user_id}", flush=True)
    print("      history (oldest first): " + ", ".join(f"{track}:{label}" for track, label in listener.history))
    with library_logs.library_output(out / library_logs.LOG_FILE, verbose):  # the client's TensorFlow start-up
        answer = demo_request.ask(result.serving_base, model_name, listener, out / SERVER_LOG)
    print(f"      {answer['model']} version {answer['version']} answered in {time.perf_counter() - started:.1f} s "
          f"(server start included); server stopped with exit code {answer['server_exit_code']}")
    print(json.dumps({key: answer[key] for key in ("model", "version")}))
    for rank, row in enumerate(answer["recommendations"], 1):
        print(f"      {rank:2d}. {row['track_id']}  score {row['score']:.4f}")
    tracks = [row["track_id"] for row in answer["recommendations"]]
    truth = demo_request.true_affinity(data, listener.user_id, {
        "recommended": tracks,
        "liked in history": [track for track, label in listener.history if label == contract.LIKE],
        "whole catalog": sorted(set(log[contract.TRACK_ID])),
    })
    if truth:
        print("      true affinity (the simulator's ground truth, cosine) for this listener: "
              + ", ".join(f"{name} {value:.3f}" for name, value in truth.items()))
    return 0 if answer["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
