"""RESULTS.md from results.json: one table per section, the ratios first, the raw numbers after."""
from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence

from benchmarks.settings import BATCH_SIZE, RECALL_TARGETS

NA = "n/a"


def number(value: Any, digits: int = 3) -> str:
    """A readable number: thousands separators for large ones, `digits` significant digits for small ones."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def times(value: Optional[float]) -> str:
    return NA if value is None else f"{number(value)}×"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell if isinstance(cell, str) else number(cell) for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def header(results: dict[str, Any]) -> str:
    machine, versions = results["machine"], results["versions"]
    cpu = machine["cpu"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{results['command']}` ({results['profile']} profile) on {results['created_utc']}, "
        f"{number(results['wall_s'] / 60, 2)} min (expected {number(results['expected_s'] / 60, 2)} min). "
        "Do not edit: a full run rewrites this file.",
        "",
        f"Machine: {cpu['model']}, {machine['cpu_count']} CPUs, SIMD {' '.join(cpu['simd']) or NA}, "
        f"{number(machine['total_memory_mb'])} MB RAM; load average at start {machine['loadavg']}, at end "
        f"{results.get('loadavg_end', NA)}. Versions: "
        + ", ".join(f"{name} {version}" for name, version in versions.items()) + ".",
        "",
        "Every figure is a ratio against the obvious alternative measured in the same run, because absolute "
        "speeds drift on this shared machine. Raw numbers, sizes and seeds are in results.json.",
    ]
    if results.get("errors"):
        lines += ["", "**Incomplete run**: " + "; ".join(f"{name}: {last_line(text)}" for name, text in
                                                         results["errors"].items())]
    return "\n".join(lines)


def headlines(sections: dict[str, Any]) -> str:
    rows = []
    if "labelling" in sections:
        s = sections["labelling"]
        rows.append(("Labelling", f"Beam in-process events/s ÷ pandas events/s ({number(s['sizes']['events'])} plays)",
                     times(s["ratios"]["beam_in_process_over_pandas_events_per_s"])))
        for key, value in s["ratios"].items():
            if key.endswith("_workers_over_in_process_events_per_s"):
                rows.append(("Labelling", f"Beam {key.split('_')[1]} workers ÷ in-process (events/s)", times(value)))
        if "beam_portable_over_in_process_events_per_s" in s["ratios"]:
            rows.append(("Labelling", "Beam portable runner (external worker pool) ÷ in-process (events/s)",
                         times(s["ratios"]["beam_portable_over_in_process_events_per_s"])))
    if "training" in sections:
        s = sections["training"]
        for weight, summary in s["with_hard"].items():
            rows.append(("Training", f"time to the random-only accuracy, with hard negatives (weight {weight}) ÷ "
                                     f"random only ({len(s['seeds'])} seed(s); paper {s['paper_time_ratio']})",
                         times(summary["time_ratio"]) + ("" if summary["reached_target_seeds"] == len(s["seeds"])
                                                          else f" (reached in {summary['reached_target_seeds']} of "
                                                               f"{len(s['seeds'])} seeds)")))
    if "retrieval" in sections and sections["retrieval"]["catalogs"]:
        s = sections["retrieval"]["catalogs"][-1]
        for mode in ("single", f"batch{BATCH_SIZE}"):
            rows.append(("Retrieval", f"ScaNN native QPS at recall@10 0.95 ÷ exact numpy, {mode}, 1 thread, "
                                      f"{number(s['catalog'])} tracks",
                         times(s["ratios"].get(f"scann_native_at_0.95_over_numpy_exact_{mode}_1t"))))
    if "serving" in sections:
        s = sections["serving"]
        rows.append(("Serving", "gRPC p50 ÷ in-process p50 (1 client)",
                     times(s["grpc_overhead"]["p50_ratio_grpc_over_in_process"])))
        rows.append(("Serving", "first request without ÷ with warm-up",
                     times(s["first_request"]["ratio_without_over_with"])))
        rows.append(("Serving", "failed requests during a version swap under load", number(s["version_swap"]["failed"])))
    if "pipeline" in sections:
        s = sections["pipeline"]
        rows.append(("Pipeline", f"slowest component's share of the run ({number(s['plays'])} plays)",
                     f"{s['slowest_component']} {number(100 * s['slowest_share'], 2)}%"))
    return "## Headlines\n\n" + table(("Section", "Figure", "Value"), rows)


RUN_NAMES = {"portable": "Beam portable runner, external worker pool (pipeline.beam_cluster)"}
"""Report names of labelling runs that are not DirectRunner modes."""


def labelling(s: dict[str, Any]) -> str:
    pandas = s["pandas"]
    rows = [(RUN_NAMES.get(run["mode"], f"Beam DirectRunner {run['mode']}"), run["workers"], run["wall_s"], run["events_per_s"],
             run["peak_rss_mb"], run["peak_rss_increase_mb"], times(run["events_per_s"] / pandas["events_per_s"]))
            for run in s["beam"]]
    rows.append(("pandas reference (read Parquet + compute)", 1, pandas["wall_s"], pandas["events_per_s"],
                 pandas["peak_rss_mb"], pandas["peak_rss_increase_mb"], "1×"))
    agreement = s["agreement"]
    return "\n\n".join([
        f"## 1. Labelling: FeedbackLabeler vs pandas ({number(s['sizes']['events'])} simulated plays, "
        f"{number(s['sizes']['users'])} listeners, {number(s['sizes']['tracks'])} tracks)",
        table(("Run", "Processes", "Wall s", "Events/s", "Peak RSS MB", "RSS increase MB", "Events/s vs pandas"), rows),
        f"pandas: read {number(pandas['read_s'])} s, compute {number(pandas['compute_s'])} s "
        f"({number(pandas['compute_events_per_s'])} events/s without the read). Beam reads GZIP TFRecords of "
        "tf.train.Example (ExampleGen's output) and writes labelled sequences; peak RSS is sampled.",
        "The pandas reference covers: " + "; ".join(s["pandas_covers"]) + ". It does not cover: "
        + "; ".join(s["pandas_does_not_cover"]) + ".",
        f"Agreement with every Beam run on {', '.join(agreement['compared'])}: "
        f"{'all equal' if agreement['agrees'] else 'DIFFERENT (see results.json)'}.",
    ])


def training(s: dict[str, Any]) -> str:
    rows = []
    for row in s["per_seed"]:
        rows.append((row["seed"], "random only", row["target_eval_accuracy"],
                     f"{number(row['time_to_target_random_only_s'])} ({row['epochs_to_target_random_only']})",
                     "1×", row["examples_per_s_random_only"]))
        for weight, run in row["with_hard"].items():
            rows.append((row["seed"], f"+ hard, weight {weight}", run["best_eval_accuracy"],
                         f"{number(run['time_to_target_s'])} ({run['epochs_to_target'] or 'not reached'})",
                         times(run["time_ratio"]), run["examples_per_s"]))
    rows.append(("mean", "random only", s["best_eval_accuracy_random_only"], number(s["time_to_target_random_only_s"]),
                 "1×", s["examples_per_s_random_only"]))
    for weight, summary in s["with_hard"].items():
        rows.append(("mean", f"+ hard, weight {weight}", summary["best_eval_accuracy"],
                     number(summary["time_to_target_s"]), times(summary["time_ratio"]), summary["examples_per_s"]))
    params = s["training_params"]
    reached = "; ".join(f"weight {weight}: {summary['reached_target_seeds']} of {len(s['per_seed'])}"
                        for weight, summary in s["with_hard"].items())
    return "\n\n".join([
        f"## 2. Training: random negatives only vs random + real hard negatives ({number(s['train_examples'])} "
        f"training examples, {source_of_model_run(s)})",
        table(("Seed", "Run", "Best eval pairwise acc.", "Time to target s (epochs)", "Time ratio", "Examples/s"),
              rows),
        f"Target = the random-only run's best eval pairwise accuracy of the same seed. Time = the Trainer's "
        f"cumulative training seconds until an epoch reaches it (evaluation and the first epoch's graph tracing "
        f"excluded). The hard runs use the default negative_loss ({params.get('negative_loss', 'softmax')}). "
        f"Paper: about "
        f"{s['paper_time_ratio']}. Seeds in which the hard-negative run reached the target: {reached}. Settings: "
        f"{params['epochs']} epochs max, patience {params['patience']}, batch {params['batch_size']}, "
        f"{params['num_random_negatives']} random negatives, up to {params['max_hard_negatives']} hard negatives.",
    ])


def _qps_cell(entry: Optional[dict[str, Any]]) -> str:
    if not entry or entry.get("interpolated_qps") is None:
        return "not reached"
    config = entry.get("best_config") or {}
    where = f" (best {number(entry['best_qps'])} at L={config['leaves_to_search']}, R={config['reorder']})" \
        if "leaves_to_search" in config else ""
    return number(entry["interpolated_qps"]) + where


RATIO_KEY = re.compile(r"^(?P<figure>.+)_(?P<mode>single|batch\d+)_(?P<threads>\d+)t$")


def ratio_matrix(ratios: dict[str, Optional[float]]) -> str:
    """Ratios named '<figure>_<mode>_<threads>t' as a figure x (mode, threads) table; the rest as a list."""
    cells: dict[str, dict[str, Optional[float]]] = {}
    columns: list[str] = []
    others = []
    for key, value in ratios.items():
        match = RATIO_KEY.match(key)
        if not match:
            others.append((key.replace("_", " "), times(value)))
            continue
        column = f"{match['mode']}, {match['threads']} thread(s)"
        if column not in columns:
            columns.append(column)
        cells.setdefault(match["figure"].replace("_", " "), {})[column] = value
    rows = [(figure, *(times(by_column.get(column)) for column in columns)) for figure, by_column in cells.items()]
    parts = [table(("Ratio", *columns), rows)] if rows else []
    if others:
        parts.append(table(("Ratio", "Value"), others))
    return "\n\n".join(parts)


def retrieval(s: dict[str, Any]) -> str:
    parts = [f"## 3. Retrieval: exact vs ScaNN, top-{s['k']} over {s['dim']}-d {s['embeddings']} embeddings "
             f"({s['queries']} queries)",
             f"Threads: {s['threads_meaning']}. ScaNN: {s['scann_config']}. Sweep: leaves searched "
             f"{s['leaf_fractions']} of the leaves, reorder {s['reorder']}."]
    for c in s["catalogs"]:
        parts.append(f"### {number(c['catalog'])} tracks ({c['num_leaves']} leaves)")
        parts.append(table(("Threads", "Copy GB/s", "Matmul GFLOP/s", "1-query roofline QPS", f"Batch-{BATCH_SIZE} "
                            "roofline QPS", "Batch bound"),
                           [(t, r["copy_gb_per_s"], r["matmul_gflop_per_s"], r["single_query_roofline_qps"],
                             r["batch_roofline_qps"], r["batch_bound"]) for t, r in c["roofline"].items()]))
        exact = [(row["method"], row["threads"], row["mode"], row["qps"], row["p50_ms"], row["p99_ms"],
                  row["share_of_roofline"]) for row in c["rows"] if row["method"].endswith("exact")]
        parts.append(table(("Exact", "Threads", "Mode", "QPS", "p50 ms", "p99 ms", "Share of roofline"), exact))
        recall_rows = []
        for method, by_threads in c["qps_at_recall"].items():
            for threads, by_mode in by_threads.items():
                for mode, targets in by_mode.items():
                    recall_rows.append((method, threads, mode,
                                        *(_qps_cell(targets.get(f"{t:.2f}")) for t in RECALL_TARGETS)))
        parts.append(table(("Method", "Threads", "Mode", *(f"QPS at recall {t:.2f}" for t in RECALL_TARGETS)),
                           recall_rows))
        builds = [(method, threads, b["build_s"], b["index_mb"], b["rss_increase_mb"])
                  for threads, by_method in c["builds"].items() for method, b in by_method.items()]
        parts.append(table(("Index", "Threads", "Build s", "Index MB", "RSS increase MB"), builds))
        parts.append(ratio_matrix(c["ratios"]))
        sweep = [(row["method"], row["threads"], row["mode"], row["leaves_to_search"], row["reorder"], row["recall"],
                  row["qps"], row["p50_ms"], row["share_of_roofline"])
                 for row in c["rows"] if not row["method"].endswith("exact")]
        parts.append("<details><summary>ScaNN sweep</summary>\n\n" + table(
            ("Method", "Threads", "Mode", "Leaves searched", "Reorder", "Recall@10", "QPS", "p50 ms",
             "Share of byte roofline"), sweep) + "\n\n</details>")
    parts.append("Roofline: one exact query streams the catalog (bytes / copy bandwidth); a batch of "
                 f"{BATCH_SIZE} costs max(FLOPs / matmul peak, bytes / bandwidth). ScaNN's share uses an estimate of "
                 "the bytes a query reads (centroids, searched leaves' 4-bit codes, reordered rows). The roofline counts "
                 "scoring only: selecting the top 10 (numpy's argpartition, TF's top_k) comes on top, and for exact "
                 "numpy batches it can cost more than the matmul.")
    return "\n\n".join(parts)


def serving(s: dict[str, Any]) -> str:
    local = s["in_process"]
    rows = [(row["clients"], row["qps"], row["p50_ms"], row["p99_ms"], row["failed"]) for row in s["closed_loop"]]
    rows.append(("in-process (1 caller)", local["qps"], local["p50_ms"], local["p99_ms"], 0))
    if "full_path" in local:
        full = local["full_path"]
        rows.append(("in-process with decode and encode (1 caller)", full["qps"], full["p50_ms"], full["p99_ms"], 0))
    first, swap, overhead = s["first_request"], s["version_swap"], s["grpc_overhead"]
    return "\n\n".join([
        "## 4. Serving: gRPC server on loopback vs the same model in-process",
        f"Model: {s['model_source']}.",
        table(("Clients (closed loop)", "QPS", "p50 ms", "p99 ms", "Failed"), rows),
        table(("Ratio", "Value"), [
            ("gRPC p50 ÷ in-process p50 (1 client)", times(overhead["p50_ratio_grpc_over_in_process"])),
            ("gRPC p50 − in-process p50, ms", number(overhead["p50_added_ms"])),
            ("gRPC max QPS ÷ in-process QPS", times(overhead["qps_ratio_grpc_max_over_in_process"])),
            ("first request without warm-up ÷ with warm-up", times(first["ratio_without_over_with"])),
        ]),
        table(("First request after AVAILABLE", "ms", "Server start to AVAILABLE, s"), [
            ("without warm-up", first["without_warmup_ms"], first["server_start_s_without_warmup"]),
            ("with warm-up (assets.extra)", first["with_warmup_ms"], first["server_start_s_with_warmup"]),
            ("steady state p50 (1 client)", first["steady_p50_ms"], ""),
            ("in-process: first call after loading (no warm-up)", first["in_process_first_call_ms"], ""),
        ]),
        *([table(("Latency target (issue 15)", "Measured", "Met"),
                 [(t["target"], number(t["value"]) if t["value"] is not None else "n/a", "yes" if t["met"] else "no")
                  for t in s["targets"]])] if s.get("targets") else []),
        f"Version swap under {swap['clients']} clients: {number(swap['requests'])} requests answered, "
        f"**{swap['failed']} failed**, answers by version {swap['answers_by_version']}; version 2 served "
        f"{number(swap['swap_seconds_after_push'])} s after it was copied in; p99 during the swap "
        f"{number(swap['p99_ms'])} ms.",
    ])


def source_of_model_run(s: dict[str, Any]) -> str:
    """The training section's run: a simulator preset, or the run --pipeline-root gave (no preset known)."""
    if "simulator_preset" in s and s["simulator_preset"] is None:
        return f"the newest run in {s['model_run']} (--pipeline-root)"
    return f"simulator preset {s.get('simulator_preset', 'default')}"


def cost_curve(curve: Optional[dict[str, Any]]) -> str:
    """Seconds (CPU seconds) per component at each size, and the growth exponents between sizes."""
    if not curve or len(curve["sizes"]) < 2:
        return "One size only: no cost curve (the full profile runs pipeline_scales 0.1, 1 and 3)."
    sizes, steps = curve["sizes"], curve["exponents"]
    names = list(dict.fromkeys(name for step in steps for name in step["components"]))
    header = (("Component",) + tuple(f"{number(size['plays'])} plays: s (CPU s)" for size in sizes)
              + tuple(f"exponent {number(step['from_plays'])} → {number(step['to_plays'])}" for step in steps))

    def cell(seconds: Any, cpu: Any) -> str:
        return f"{number(seconds)} ({number(cpu)})"

    def exponent(value: Any) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    rows = [(name,) + tuple(cell(*curve_component(size, name)) for size in sizes)
            + tuple(f"{exponent(step['components'][name]['seconds'])} ({exponent(step['components'][name]['cpu_s'])})"
                    if name in step["components"] else "n/a" for step in steps) for name in names]
    rows.append(("**whole run** (MLMD span)",) + tuple(cell(size["mlmd_span_s"], size["cpu_s"]) for size in sizes)
                + tuple(f"**{exponent(step['run_s'])}** ({exponent(step['run_cpu_s'])})" for step in steps))
    rows.append(("peak RSS MB",) + tuple(number(size["peak_rss_mb"]) for size in sizes) + ("",) * len(steps))
    verdict = ("linear" if curve["linear"] else "NOT linear") if curve["linear"] is not None else "n/a"
    return "\n\n".join([
        "### Cost curve",
        table(header, rows),
        f"Growth exponent log(cost ratio) / log(plays ratio), wall (CPU): {verdict} by issue 14's bar "
        f"(whole run ≤ {curve['linear_exponent']}; largest {exponent(curve['max_run_exponent'])}). Load averages "
        f"after each run: {[size['load_average'] for size in sizes]}.",
    ])


def curve_component(size: dict[str, Any], name: str) -> tuple[Any, Any]:
    """(seconds, CPU seconds) of one component at one size of the curve (n/a when that run lacks it)."""
    row = size.get("components", {}).get(name, {})
    return row.get("seconds"), row.get("cpu_s")


def pipeline(s: dict[str, Any]) -> str:
    rows = [(row["component"], row["seconds"], number(row.get("cpu_s")), number(row.get("peak_rss_mb")),
             f"{number(100 * row['share_of_run'], 2)}%", row["state"]) for row in s["components"]]
    return "\n\n".join([
        f"## 5. Pipeline: pipeline.local_runner end to end ({number(s['plays'])} "
        f"{'plays' if s.get('given_root') else 'simulated plays'})",
        table(("Component", "Seconds", "CPU s", "Peak RSS MB", "Share of run", "State"), rows),
        f"Run {number(s['mlmd_span_s'])} s by MLMD (first start to last end), {number(s['wall_s'])} s with the "
        f"process start; {number(s['orchestration_s'])} s between components; {number(s['events_per_s'])} plays/s "
        f"end to end. Slowest: **{s['slowest_component']}** ({number(100 * s['slowest_share'], 2)}% of the run). "
        f"Settings: {s['settings']}." if not s.get("given_root") else
        f"The newest run in {s['root']} (--pipeline-root): not run by this command, so no wall time or settings.",
        cost_curve(s.get("curve")),
    ])


RENDERERS = {"labelling": labelling, "training": training, "retrieval": retrieval, "serving": serving,
             "pipeline": pipeline}


def render(results: dict[str, Any]) -> str:
    sections = results["sections"]
    parts = [header(results), headlines(sections)]
    parts += [RENDERERS[name](body) for name, body in sections.items() if name in RENDERERS]
    return "\n\n".join(parts) + "\n"
