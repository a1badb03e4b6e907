"""Side-by-side benchmarks of labelling, training, retrieval, serving and the pipeline (issue 8).

    python -m benchmarks.run --out DIR [--quick | --tiny] [--sections labelling,retrieval,...]
                             [--size KEY=VALUE ...] [--model-dir DIR] [--pipeline-root ROOT] [--dry-run]

Writes DIR/results.json (versions, CPU flags, threads, sizes, seeds, raw numbers per section) and
DIR/RESULTS.md (tables; every figure a ratio against the obvious alternative measured in the same run).
A full run (no --quick/--tiny, no --size, every section) that completes also rewrites benchmarks/RESULTS.md.

Sections, in run order:
  labelling  FeedbackLabeler (Beam DirectRunner in-process and with worker processes) vs the same counts in pandas
  training   examples/s; time to the random-only accuracy, random negatives only vs + real hard negatives, per seed
  retrieval  exact top-10 (numpy, TF) vs ScaNN (TF op, native) on the same embeddings, recall sweep, roofline
  serving    gRPC server closed loop (1-8 clients) vs in-process; first request with/without warm-up; version swap
  pipeline   pipeline.local_runner end to end, per component (MLMD)
The training and serving sections share one pipeline run on a simulated log (with the pipeline section too
when the logs are the same, as in --quick). --pipeline-root re-measures a finished run instead: those three
sections use the newest run under that `pipeline.local_runner --root` (its Transform output, its export, its
MLMD timings) and nothing is simulated or run again. A section that fails fails the run (exit 1) after the
other sections ran and the partial results were written.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # before TensorFlow loads: its C++ INFO lines stay off the console

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import pathlib  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any, Optional, Sequence  # noqa: E402

from benchmarks import estimate, machine, report, results  # noqa: E402
from benchmarks.measure import load_average  # noqa: E402
from benchmarks.pipeline_runs import PipelineRuns  # noqa: E402
from benchmarks.settings import PROFILES, RESULTS_JSON, RESULTS_MD, SECTIONS, Profile, with_overrides  # noqa: E402
from pipeline.configs import METADATA_FILE  # noqa: E402
from harness.progress import Progress  # noqa: E402
from harness.versions import versions  # noqa: E402
from reports.json_safe import json_safe  # noqa: E402

MARKER = ".written-by-benchmarks-run"
REPO_RESULTS = pathlib.Path(__file__).resolve().parent / RESULTS_MD


def parse_sections(text: str) -> tuple[str, ...]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"--sections takes a comma-separated subset of {','.join(SECTIONS)}; "
                                         f"unknown: {unknown or 'none given'}")
    return tuple(section for section in SECTIONS if section in chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="output folder: new, empty, or written by an earlier benchmarks.run (then replaced)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="small sizes, under 10 minutes on an idle 2-core machine; never rewrites "
                           "benchmarks/RESULTS.md")
    size.add_argument("--tiny", action="store_true",
                      help="smoke-test sizes (every section runs for real, the numbers mean nothing)")
    parser.add_argument("--sections", type=parse_sections, default=SECTIONS, metavar="A,B,...",
                        help=f"sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--size", dest="sizes", action="append", default=[], metavar="KEY=VALUE",
                        help="override one size of the profile (repeatable), e.g. --size labelling_events=200000; "
                             "keys: " + ", ".join(f.name for f in dataclasses.fields(Profile) if f.name != "name"))
    parser.add_argument("--model-dir", type=pathlib.Path, default=None,
                        help="serve this pushed SavedModel version folder in the serving section instead of the "
                             "model run's export")
    parser.add_argument("--pipeline-root", type=pathlib.Path, default=None, metavar="ROOT",
                        help="a finished `python -m pipeline.local_runner --root ROOT` run: the training, serving "
                             "and pipeline sections use its newest run instead of simulating a log and running "
                             "the pipeline (the model_* and pipeline_* sizes are then unused)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the expected time, then stop")
    return parser


def prepare_out(out: pathlib.Path) -> None:
    """Empties a folder an earlier run wrote; refuses any other non-empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / MARKER).is_file():
            raise SystemExit(f"error: --out {out} is not empty and was not written by benchmarks.run; choose another")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("Replaced by each `python -m benchmarks.run --out` here.\n")


def run_section(name: str, profile: Profile, out: pathlib.Path, runs: PipelineRuns, say: Progress,
                model_dir: Optional[pathlib.Path]) -> dict[str, Any]:
    if name == "labelling":
        from benchmarks import labelling
        return labelling.run(profile, out / "labelling", say)
    if name == "training":
        from benchmarks import training
        return training.run(profile, runs, out / "training", say)
    if name == "retrieval":
        from benchmarks import retrieval
        return retrieval.run(profile, out / "retrieval", say)
    if name == "serving":
        from benchmarks import serving
        return serving.run(profile, runs, out / "serving", say, model_dir)
    if name == "pipeline":
        from benchmarks import pipeline_timing
        return pipeline_timing.run(profile, runs, say)
    raise ValueError(f"unknown section {name!r}")


def training_seeds(profile: Profile) -> list[int]:
    from benchmarks import training
    first = training.training_config(profile).seed
    return list(range(first, first + profile.training_seeds))


def write(document: dict[str, Any], out: pathlib.Path) -> None:
    results.write_json(document, out / RESULTS_JSON)
    (out / RESULTS_MD).write_text(report.render(json_safe(document)), encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    profile = PROFILES["tiny" if args.tiny else "quick" if args.quick else "full"]
    try:
        profile = with_overrides(profile, args.sizes)
    except ValueError as error:
        parser.error(str(error))
    if args.model_dir is not None and not (args.model_dir / "saved_model.pb").is_file():
        parser.error(f"--model-dir {args.model_dir} is not a SavedModel version folder (no saved_model.pb)")
    if args.pipeline_root is not None and not (args.pipeline_root / METADATA_FILE).is_file():
        parser.error(f"--pipeline-root {args.pipeline_root} holds no pipeline run (no {METADATA_FILE})")
    say = Progress("bench")
    expected = estimate.section_seconds(profile, args.sections, args.model_dir is not None,
                                        args.pipeline_root is not None)
    say(f"{profile.name} run of {', '.join(args.sections)} -> {args.out}")
    say("expected: " + ", ".join(f"{name} ~{seconds / 60:.1f} min" for name, seconds in expected.items())
        + f"; total ~{sum(expected.values()) / 60:.0f} min on an idle 2-core machine (load now {load_average()})")
    if args.dry_run:
        return 0
    prepare_out(args.out)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    document: dict[str, Any] = {
        "benchmark": "issue 8: labelling, training, retrieval, serving, pipeline",
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name, "quick": profile.name != "full", "command": command,
        "machine": machine.describe(), "versions": versions(machine.PACKAGES),
        "threads": {"cpu_count": os.cpu_count(), "labelling_workers": profile.workers,
                    "retrieval_threads": profile.threads, "serving_clients": profile.clients},
        "sizes": dataclasses.asdict(profile), "size_overrides": list(args.sizes),
        "pipeline_root": None if args.pipeline_root is None else str(args.pipeline_root.resolve()),
        "seeds": {"simulation": profile.seed, "training": training_seeds(profile),
                  "retrieval": {"centres": profile.seed, "queries": profile.seed + 1, "catalog": profile.seed + 2}},
        "sections_requested": list(args.sections),
        "sections": {}, "durations_s": {}, "expected_s": sum(expected.values()), "expected_by_section_s": expected,
        "wall_s": 0.0, "complete": False, "errors": {},
    }
    runs = PipelineRuns(args.out, say, args.pipeline_root)
    began = time.perf_counter()
    for index, name in enumerate(args.sections, 1):
        say(f"[{index}/{len(args.sections)}] {name}: start (expected ~{expected[name] / 60:.1f} min)")
        started = time.perf_counter()
        try:
            document["sections"][name] = run_section(name, profile, args.out, runs, say, args.model_dir)
        except results.SectionFailed as error:
            document["sections"][name] = error.partial
            document["errors"][name] = f"{type(error).__name__}: {error}"
        except Exception as error:  # recorded, written, and the run exits 1 after the other sections
            document["errors"][name] = traceback.format_exc()
            say(f"[{index}/{len(args.sections)}] {name}: FAILED: {type(error).__name__}: {error}")
        document["durations_s"][name] = time.perf_counter() - started
        document["wall_s"] = time.perf_counter() - began
        document["loadavg_end"] = load_average()
        write(document, args.out)
        say(f"[{index}/{len(args.sections)}] {name}: {'FAILED' if name in document['errors'] else 'done'} in "
            f"{document['durations_s'][name] / 60:.1f} min")
    found = results.problems(json_safe(document), args.sections)
    document["complete"] = not document["errors"] and not found
    if found and not document["errors"]:
        document["errors"]["results"] = "incomplete results: " + "; ".join(found)
    write(document, args.out)
    say(f"wrote {args.out / RESULTS_JSON} and {args.out / RESULTS_MD} in {document['wall_s'] / 60:.1f} min")
    if not document["complete"]:
        for name, text in document["errors"].items():
            print(f"error in {name}:\n{text}", file=sys.stderr)
        return 1
    if (profile.name == "full" and not args.sizes and args.sections == SECTIONS and args.model_dir is None
            and args.pipeline_root is None):
        shutil.copyfile(args.out / RESULTS_MD, REPO_RESULTS)
        say(f"refreshed {REPO_RESULTS}")
    else:
        say(f"{REPO_RESULTS.name} in the repository left as it is (only a complete full run of every section "
            "with default sizes and its own pipeline runs rewrites it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
