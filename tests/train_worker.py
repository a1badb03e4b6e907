"""One Trainer worker process: `run_fn` on a run's transformed examples, as a Kubeflow Trainer pod would call it.

    TF_CONFIG=... python -m tests.train_worker --transform-graph URI --examples URI --out DIR [--set key=value ...]

A separate process because MultiWorkerMirroredStrategy must be created before any other TensorFlow op.
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Sequence

from components.retrieval_evaluator.evaluate import RunData
from experiments.training import fn_args_for
from models import trainer
from pipeline import configs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.train_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transform-graph", required=True, help="Transform's transform_graph URI")
    parser.add_argument("--examples", required=True, help="Transform's transformed_examples URI")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="model and model_run folders go here")
    configs.add_settings_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    params = configs.with_overrides(configs.PipelineConfig(), args.settings).training_params()
    trainer.run_fn(fn_args_for(RunData(args.transform_graph, args.examples), args.out, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
