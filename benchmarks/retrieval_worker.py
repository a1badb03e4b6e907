"""One retrieval measurement process: one catalog, one thread count. Started by benchmarks.retrieval.

    python -m benchmarks.retrieval_worker JOB.json

A fresh process per thread count because BLAS and TensorFlow fix their thread pools at start-up: the parent
sets OMP/OPENBLAS/MKL_NUM_THREADS, and this process sets TensorFlow's intra- and inter-op threads before the
first op. "Threads" is what each library may use inside one call: BLAS threads for numpy, TensorFlow's
intra-op pool, ScaNN's own pool for batches (`search_batched_parallel`). A single ScaNN query uses one thread.

Measured, each in time-bounded loops: exact top-k in numpy and TensorFlow (matmul + top_k, as TFRS's
BruteForce), ScaNN's TensorFlow op (as TFRS's ScaNN layer builds it) and ScaNN's native searcher (pybind),
one query at a time and in batches; recall@k of every configuration over all queries against the exact
answers the parent computed; index build time and size; the roofline ceilings at this thread count.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from benchmarks import ann_metrics, machine
from benchmarks.measure import MB, rss_mb, timed_loop

MAX_CALLS = 1_000_000


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


class Worker:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.k = job["k"]
        self.batch = job["batch_size"]
        self.loop_s = job["loop_s"]
        self.db = np.load(job["catalog_path"])
        self.queries = np.load(job["queries_path"])
        self.exact = np.load(job["exact_path"])
        self.rows: list[dict[str, Any]] = []
        self.builds: dict[str, dict[str, Any]] = {}
        self.batches = [self.queries[i:i + self.batch] for i in range(0, len(self.queries) - self.batch + 1, self.batch)]
        if not self.batches:
            raise ValueError(f"{len(self.queries)} queries are fewer than one batch of {self.batch}")

    def measure(self, method: str, single: Callable[[np.ndarray], Any], batched: Callable[[np.ndarray], Any],
                all_ids: Callable[[np.ndarray], np.ndarray], **config: Any) -> None:
        """Recall over all queries, then a single-query loop and a batch loop; one row per mode."""
        recall = ann_metrics.recall_at_k(all_ids(self.queries), self.exact, self.k)
        n_queries, n_batches = len(self.queries), len(self.batches)
        single(self.queries[0])  # first calls pay for tracing and thread pools: not timed
        batched(self.batches[0])
        one = timed_loop(lambda i: single(self.queries[i % n_queries]), self.loop_s, MAX_CALLS)
        many = timed_loop(lambda i: batched(self.batches[i % n_batches]), self.loop_s, MAX_CALLS)
        for mode, loop, per_call in (("single", one, 1), (f"batch{self.batch}", many, self.batch)):
            self.rows.append({"method": method, "mode": mode, "threads": self.job["threads"], **config,
                              "recall": recall, "qps": loop["calls_per_s"] * per_call, "calls": loop["calls"],
                              "seconds": loop["seconds"], "p50_ms": loop["p50_ms"], "p99_ms": loop["p99_ms"]})

    def numpy_exact(self) -> None:
        db, k = self.db, self.k

        def single(query: np.ndarray) -> np.ndarray:
            scores = db @ query
            top = np.argpartition(-scores, k - 1)[:k]
            return top[np.argsort(-scores[top])]

        self.measure("numpy_exact", single, lambda q: ann_metrics.exact_top_k(q, db, k, block=self.batch),
                     lambda q: ann_metrics.exact_top_k(q, db, k, block=self.batch))
        self.builds["numpy_exact"] = {"build_s": 0.0, "index_mb": db.nbytes / MB, "rss_increase_mb": 0.0}

    def tf_exact(self) -> None:
        import tensorflow as tf

        before = rss_mb()
        began = time.perf_counter()
        db = tf.constant(self.db)
        k = self.k
        single_fn = tf.function(lambda q: tf.math.top_k(tf.linalg.matvec(db, q), k=k).indices,
                                input_signature=[tf.TensorSpec([db.shape[1]], tf.float32)])
        batch_fn = tf.function(lambda q: tf.math.top_k(tf.matmul(q, db, transpose_b=True), k=k).indices,
                               input_signature=[tf.TensorSpec([None, db.shape[1]], tf.float32)])
        build_s = time.perf_counter() - began

        def all_ids(queries: np.ndarray) -> np.ndarray:
            return np.concatenate([batch_fn(queries[i:i + self.batch]).numpy()
                                   for i in range(0, len(queries), self.batch)])

        self.measure("tf_exact", lambda q: single_fn(q).numpy(), lambda q: batch_fn(q).numpy(), all_ids)
        self.builds["tf_exact"] = {"build_s": build_s, "index_mb": self.db.nbytes / MB,
                                   "rss_increase_mb": rss_mb() - before}

    def sweep(self) -> list[tuple[int, int]]:
        leaves = self.job["num_leaves"]
        to_search = sorted({min(leaves, max(1, round(f * leaves))) for f in self.job["leaf_fractions"]})
        return [(n, reorder) for n in to_search for reorder in self.job["reorder"]]

    def _builder(self, module: Any) -> Any:
        job = self.job
        builder = module.builder(self.db, self.k, "dot_product").tree(
            num_leaves=job["num_leaves"], num_leaves_to_search=max(1, job["num_leaves"] // 10),
            training_iterations=job["training_iterations"])
        return builder.score_ah(dimensions_per_block=job["dimensions_per_block"]).reorder(max(job["reorder"]))

    def scann_native(self) -> None:
        from scann.scann_ops.py import scann_ops_pybind

        before = rss_mb()
        began = time.perf_counter()
        searcher = self._builder(scann_ops_pybind).build()
        build_s = time.perf_counter() - began
        rss_increase = rss_mb() - before
        searcher.set_num_threads(self.job["threads"])
        with tempfile.TemporaryDirectory() as folder:
            searcher.serialize(folder)
            index_mb = directory_bytes(folder) / MB
        self.builds["scann_native"] = {"build_s": build_s, "index_mb": index_mb, "rss_increase_mb": rss_increase}
        k = self.k
        for leaves, reorder in self.sweep():
            self.measure(
                "scann_native",
                lambda q: searcher.search(q, k, reorder, leaves),
                lambda q: searcher.search_batched_parallel(q, k, reorder, leaves),
                lambda q: np.asarray(searcher.search_batched(q, k, reorder, leaves)[0]),
                leaves_to_search=leaves, reorder=reorder)

    def scann_tf_op(self) -> None:
        from scann import scann_ops

        before = rss_mb()
        began = time.perf_counter()
        searcher = self._builder(scann_ops).build()
        build_s = time.perf_counter() - began
        rss_increase = rss_mb() - before
        state = searcher.serialize_to_module()
        index_mb = sum(variable.numpy().nbytes for variable in state.variables) / MB
        self.builds["scann_tf_op"] = {"build_s": build_s, "index_mb": index_mb, "rss_increase_mb": rss_increase}
        k = self.k
        for leaves, reorder in self.sweep():
            self.measure(
                "scann_tf_op",
                lambda q: searcher.search(q, k, reorder, leaves)[0].numpy(),
                lambda q: searcher.search_batched_parallel(q, k, reorder, leaves)[0].numpy(),
                lambda q: searcher.search_batched(q, k, reorder, leaves)[0].numpy(),
                leaves_to_search=leaves, reorder=reorder)

    def run(self) -> dict[str, Any]:
        threads = self.job["threads"]
        roofline = {**machine.memory_bandwidth(self.job["roofline_copy_mb"], threads),
                    **machine.peak_flops(self.job["roofline_matmul_n"])}
        for step in (self.numpy_exact, self.tf_exact, self.scann_native, self.scann_tf_op):
            began = time.perf_counter()
            step()
            print(f"retrieval worker ({len(self.db)} tracks, {threads} threads): {step.__name__} "
                  f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        return {"threads": threads, "roofline": roofline, "builds": self.builds, "rows": self.rows,
                "thread_env": {name: os.environ.get(name) for name in machine.THREAD_ENV}}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    job = json.loads(pathlib.Path(argv[0]).read_text())
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(job["threads"])
    result = Worker(job).run()
    pathlib.Path(job["result_path"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
