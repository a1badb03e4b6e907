"""CPU ms per training step of the real RetrievalModel against the size of its track table, per optimizer.

    python -m benchmarks.optimizer_step --run ROOT [--scales 1,3,9] [--optimizers adam,lazy_adam]
                                        [--rounds 3] [--steps 100] [--out FILE]

ROOT is a finished `pipeline.local_runner` run; its Transform output gives the batches (the first `--steps`
batches of the train split, cached in memory so reading is not timed) and the catalog. For each scale k the
track table holds k x the catalog's rows: the extra rows have a play count of 0, so no batch, history or
sampled negative ever looks them up and only the table's size changes. One model per (optimizer, scale), traced
and warmed by two passes first; then `--rounds` rounds, each timing one pass per model, the order reversed every
other round (A/B alternation against drifting load). Reports per model the median and spread of CPU ms per step
(this process's user + system time) and wall ms per step, the ratio to scale 1, and lazy_adam's ratio to adam;
the load averages before and after. Pin it to one core (`taskset -c 1`) to compare runs with each other.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
import time
from typing import Any, Optional, Sequence

from benchmarks.measure import load_average
from harness.numbers import cli_type, int_list
from models.params import OPTIMIZERS

DEFAULT_SCALES = "1,3,9"
DEFAULT_ROUNDS = 3
DEFAULT_STEPS = 100
WARM_UP_PASSES = 2
"""Untimed passes per model first: the first traces the step; a model's first timed pass after only that one
was up to 1.5x slower than its later ones (one-off costs past tracing)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimizer_step", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", type=pathlib.Path, required=True, metavar="ROOT",
                        help="a finished `python -m pipeline.local_runner --root ROOT` run (its Transform output)")
    parser.add_argument("--scales", type=cli_type(int_list, "--scales"), default=DEFAULT_SCALES,
                        help="track table sizes as multiples of the run's catalog")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help=f"comma-separated subset of {', '.join(OPTIMIZERS)}")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed passes per model")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps (batches) per pass")
    parser.add_argument("--out", type=pathlib.Path, default=None, metavar="FILE", help="also write the JSON here")
    return parser


def padded_model(output: Any, params: Any, scale: int) -> Any:
    """The Trainer's RetrievalModel on the catalog of Transform's `output`, its track table `scale` x as long
    (extra rows unplayed)."""
    import numpy as np

    from models import features, trainer

    counts = features.track_counts_by_id(output)  # one entry per row of the track table (OOV included)
    padded = np.concatenate([counts, np.zeros(len(counts) * (scale - 1), dtype=counts.dtype)])
    config = trainer.tower_config_of(params, len(padded), features.num_station_ids(output))
    return trainer.RetrievalModel(config, params, padded)


def sparse_gradient_variables(model: Any, batch: dict) -> list[str]:
    """Names of the variables whose gradient on `batch` is row-wise (tf.IndexedSlices): the ones lazy_adam
    updates row by row."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = model.compute_loss(batch, training=True)
    variables = model.trainable_variables
    gradients = tape.gradient(value, variables)
    return [variable.name for variable, gradient in zip(variables, gradients)
            if isinstance(gradient, tf.IndexedSlices)]


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def measure(root: pathlib.Path, scales: Sequence[int], optimizers: Sequence[str], rounds: int, steps: int,
            say=print) -> dict[str, Any]:
    """Times `rounds` passes of `steps` steps per (optimizer, scale); returns the record."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from experiments.loss_ablation import run_data_of
    from models import features, inputs, optimizer
    from pipeline import configs

    data = run_data_of(root)
    params = configs.PipelineConfig().training_params()
    output = tft.TFTransformOutput(data.transform_graph_uri)
    batches = inputs.read_transformed(data.split_pattern("train"), output, params.batch_size,
                                      params.max_history, params.max_hard_negatives).take(steps).cache()
    cached = sum(1 for _ in batches)
    catalog = features.num_track_ids(output)
    loads = [load_average()]
    models: dict[tuple[str, int], Any] = {}
    for name in optimizers:
        for scale in scales:
            tf.keras.utils.set_random_seed(params.seed)
            model = padded_model(output, dataclasses.replace(params, optimizer=name), scale)
            model.compile(optimizer=optimizer.make_optimizer(name, params.learning_rate))
            for _ in range(WARM_UP_PASSES):  # the first traces the step and builds the slots
                model.fit(batches, epochs=1, verbose=0)
            models[name, scale] = model
    sparse = sparse_gradient_variables(models[optimizers[0], scales[0]], next(iter(batches)))
    timings: dict[tuple[str, int], list[tuple[float, float]]] = {key: [] for key in models}
    order = list(models)
    for round_index in range(rounds):
        for key in order if round_index % 2 == 0 else order[::-1]:
            cpu, wall = time.process_time(), time.perf_counter()
            models[key].fit(batches, epochs=1, verbose=0)
            timings[key].append((1000 * (time.process_time() - cpu) / cached,
                                 1000 * (time.perf_counter() - wall) / cached))
        loads.append(load_average())
        say(f"round {round_index + 1}/{rounds} done, load {loads[-1]}")
    rows = []
    for (name, scale), values in timings.items():
        cpu_ms = spread([cpu for cpu, _ in values])
        rows.append({"optimizer": name, "scale": scale, "table_rows": catalog * scale,
                     "cpu_ms_per_step": cpu_ms, "wall_ms_per_step": spread([wall for _, wall in values]),
                     "cpu_per_step_runs_ms": [round(cpu, 2) for cpu, _ in values]})
    by_key = {(row["optimizer"], row["scale"]): row["cpu_ms_per_step"]["median"] for row in rows}
    for row in rows:
        row["cpu_ratio_to_scale_1"] = round(row["cpu_ms_per_step"]["median"] / by_key[row["optimizer"], scales[0]], 3)
        if row["optimizer"] != optimizers[0]:
            row[f"cpu_ratio_to_{optimizers[0]}"] = round(row["cpu_ms_per_step"]["median"]
                                                        / by_key[optimizers[0], row["scale"]], 3)
    return {"run": str(root), "catalog_rows": catalog, "steps_per_pass": cached, "batch_size": params.batch_size,
            "rounds": rounds,
            "sparse_gradient_variables": sparse, "load_averages": loads, "rows": rows}


def markdown(record: dict[str, Any]) -> str:
    lines = ["| optimizer | track table rows | CPU ms/step median (min-max) | ratio to 1x | wall ms/step median |",
             "|---|---|---|---|---|"]
    for row in record["rows"]:
        cpu = row["cpu_ms_per_step"]
        lines.append(f"| {row['optimizer']} | {row['table_rows']:,} | {cpu['median']} ({cpu['min']}-{cpu['max']}) | "
                     f"{row['cpu_ratio_to_scale_1']} | {row['wall_ms_per_step']['median']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    unknown = [name for name in optimizers if name not in OPTIMIZERS]
    if unknown or not optimizers:
        print(f"error: --optimizers takes names from {', '.join(OPTIMIZERS)}, got {args.optimizers!r}", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.steps < 1:
        print("error: --rounds and --steps must be >= 1", file=sys.stderr)
        return 2
    try:
        record = measure(args.run, args.scales, optimizers, args.rounds, args.steps,
                         say=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(record, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
