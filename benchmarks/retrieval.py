"""Section 3, retrieval: top-10 over the same candidate embeddings with exact brute force (numpy, TensorFlow)
and ScaNN (its TensorFlow op and its native searcher) over a sweep of leaves searched and reordering, at each
thread count, next to the roofline of this machine.

Embeddings are synthetic (dim 64, L2-normalised): 'clustered' puts tracks around sqrt(N) random unit centres
(a trained model's catalog is clustered by genre and artist), 'random' is uniform on the sphere (the worst
case for partitioning). Queries come from the same distribution with another seed. Each thread count runs
in its own process (benchmarks.retrieval_worker). Ratios: ScaNN's QPS at a recall over exact numpy's QPS,
the TF op over the native searcher, TF's exact over numpy's, 2 threads over 1, and attained over roofline.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

from benchmarks import ann_metrics, machine
from benchmarks.settings import BATCH_SIZE, RECALL_K, RECALL_TARGETS, Profile
from harness.numbers import ratio

METHODS = ("numpy_exact", "tf_exact", "scann_native", "scann_tf_op")
EXACT_METHODS = ("numpy_exact", "tf_exact")
AH_BITS_PER_BLOCK = 4
"""ScaNN's asymmetric hashing (lut16) stores 4 bits per block of dimensions."""
WORKER_TIMEOUT_S = 3 * 3600
CLUSTER_SPREAD = 0.5
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def normalise(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def embeddings(n: int, dim: int, kind: str, seed: int, centres: int, centres_seed: int) -> np.ndarray:
    """n unit vectors: uniform on the sphere ('random') or around `centres` random unit centres ('clustered').

    The catalog and its queries share `centres` and `centres_seed` (the same clusters) and differ in `seed`."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return normalise(rng.standard_normal((n, dim), dtype=np.float32))
    centre_vectors = normalise(np.random.default_rng(centres_seed).standard_normal((max(1, centres), dim)))
    members = rng.integers(0, len(centre_vectors), n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * (CLUSTER_SPREAD / math.sqrt(dim))
    return normalise(centre_vectors[members] + noise)


def num_leaves(n: int) -> int:
    """The pipeline's default (models.serving_export.ScannParams.leaves): about sqrt(catalog size)."""
    return max(1, min(n, int(round(math.sqrt(n)))))


def run_worker(job: dict[str, Any], folder: pathlib.Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Runs one worker process with its thread count in the environment; fails with its log on error."""
    threads = job["threads"]
    job_path = folder / f"job-{job['catalog']}-{threads}.json"
    job["result_path"] = str(folder / f"result-{job['catalog']}-{threads}.json")
    job_path.write_text(json.dumps(job, indent=1))
    log_path = folder / f"worker-{job['catalog']}-{threads}.log"
    env = {**os.environ, **{name: str(threads) for name in machine.THREAD_ENV},
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(
               [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    say(f"retrieval: {job['catalog']:,} tracks, {threads} thread(s) (log {log_path})")
    began = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.run([sys.executable, "-m", "benchmarks.retrieval_worker", str(job_path)],
                                 cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 timeout=WORKER_TIMEOUT_S, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"retrieval worker ({job['catalog']} tracks, {threads} threads) exited with "
                           f"{process.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
    result = json.loads(pathlib.Path(job["result_path"]).read_text())
    result["wall_s"] = time.perf_counter() - began
    return result


def roofline(n: int, dim: int, bandwidth_gbs: float, peak_gflops: float) -> dict[str, float]:
    """Upper bounds on exact QPS: one query streams the whole catalog (memory bound); a batch does 2*B*N*dim
    FLOPs over one pass of the catalog (compute or memory bound, whichever is slower)."""
    catalog_bytes = n * dim * 4
    batch_flops = 2 * BATCH_SIZE * n * dim
    batch_time = max(batch_flops / (peak_gflops * 1e9), (catalog_bytes + BATCH_SIZE * n * 4) / (bandwidth_gbs * 1e9))
    return {"single_query_bytes": catalog_bytes, "single_query_roofline_qps": bandwidth_gbs * 1e9 / catalog_bytes,
            "batch_flops": batch_flops, "batch_roofline_qps": BATCH_SIZE / batch_time,
            "batch_bound": "compute" if batch_flops / (peak_gflops * 1e9) >= catalog_bytes / (bandwidth_gbs * 1e9)
            else "memory"}


def scann_query_bytes(n: int, dim: int, leaves: int, to_search: int, reorder: int, dims_per_block: int) -> float:
    """Bytes one ScaNN query reads, about: centroids, the searched leaves' 4-bit codes, the reordered rows."""
    codes = n * (to_search / leaves) * (dim / dims_per_block) * AH_BITS_PER_BLOCK / 8
    return leaves * dim * 4 + codes + reorder * dim * 4


def summarize_catalog(n: int, dim: int, leaves: int, dims_per_block: int,
                      results: list[dict[str, Any]]) -> dict[str, Any]:
    """QPS at recall per method, thread count and mode; roofline shares; the section's ratios."""
    rows = [row for result in results for row in result["rows"]]
    at_recall: dict[str, Any] = {}
    for method in METHODS:
        for result in results:
            threads = result["threads"]
            for mode in ("single", f"batch{BATCH_SIZE}"):
                points = [r for r in rows if r["method"] == method and r["threads"] == threads and r["mode"] == mode]
                if points:
                    at_recall.setdefault(method, {}).setdefault(str(threads), {})[mode] = \
                        ann_metrics.qps_at_recalls(points, RECALL_TARGETS)
    for row in rows:
        result = next(r for r in results if r["threads"] == row["threads"])
        bound = roofline(n, dim, result["roofline"]["copy_gb_per_s"], result["roofline"]["matmul_gflop_per_s"])
        if row["method"] in EXACT_METHODS:
            ceiling = bound["single_query_roofline_qps"] if row["mode"] == "single" else bound["batch_roofline_qps"]
        else:
            query_bytes = scann_query_bytes(n, dim, leaves, row["leaves_to_search"], row["reorder"], dims_per_block)
            row["bytes_per_query_estimate"] = query_bytes
            ceiling = result["roofline"]["copy_gb_per_s"] * 1e9 / query_bytes
        row["roofline_qps"] = ceiling
        row["share_of_roofline"] = ratio(row["qps"], ceiling)

    def exact_qps(method: str, threads: int, mode: str) -> Optional[float]:
        found = [r["qps"] for r in rows if r["method"] == method and r["threads"] == threads and r["mode"] == mode]
        return found[0] if found else None

    def qps_at(method: str, threads: int, mode: str, target: float) -> Optional[float]:
        return at_recall.get(method, {}).get(str(threads), {}).get(mode, {}).get(f"{target:.2f}", {}).get(
            "interpolated_qps")

    ratios: dict[str, Any] = {}
    for result in results:
        t = result["threads"]
        for mode in ("single", f"batch{BATCH_SIZE}"):
            base = exact_qps("numpy_exact", t, mode)
            ratios[f"tf_exact_over_numpy_exact_{mode}_{t}t"] = ratio(exact_qps("tf_exact", t, mode), base)
            for target in RECALL_TARGETS:
                native = qps_at("scann_native", t, mode, target)
                ratios[f"scann_native_at_{target:.2f}_over_numpy_exact_{mode}_{t}t"] = ratio(native, base)
                ratios[f"scann_tf_op_over_native_at_{target:.2f}_{mode}_{t}t"] = ratio(
                    qps_at("scann_tf_op", t, mode, target), native)
    if len(results) > 1:
        low, high = min(r["threads"] for r in results), max(r["threads"] for r in results)
        for method in EXACT_METHODS:
            for mode in ("single", f"batch{BATCH_SIZE}"):
                ratios[f"{method}_{mode}_{high}t_over_{low}t"] = ratio(exact_qps(method, high, mode),
                                                                       exact_qps(method, low, mode))
        for method in ("scann_native", "scann_tf_op"):
            for mode in ("single", f"batch{BATCH_SIZE}"):
                ratios[f"{method}_at_0.95_{mode}_{high}t_over_{low}t"] = ratio(qps_at(method, high, mode, 0.95),
                                                                               qps_at(method, low, mode, 0.95))
    rooflines = {str(r["threads"]): {**r["roofline"], **roofline(n, dim, r["roofline"]["copy_gb_per_s"],
                                                                 r["roofline"]["matmul_gflop_per_s"])}
                 for r in results}
    return {"catalog": n, "dim": dim, "num_leaves": leaves,
            "builds": {str(r["threads"]): r["builds"] for r in results}, "rows": rows, "qps_at_recall": at_recall,
            "roofline": rooflines, "ratios": ratios, "worker_wall_s": {str(r["threads"]): r["wall_s"] for r in results}}


def run(profile: Profile, out: pathlib.Path, say: Callable[[str], None]) -> dict[str, Any]:
    from pipeline import configs

    scann = configs.PipelineConfig().scann_params()
    out.mkdir(parents=True, exist_ok=True)
    catalogs = []
    for n in profile.catalogs:
        began = time.perf_counter()
        centres = int(math.sqrt(n))
        catalog = embeddings(n, profile.retrieval_dim, profile.retrieval_embeddings, profile.seed + 2, centres,
                             profile.seed)
        catalog_queries = embeddings(profile.retrieval_queries, profile.retrieval_dim, profile.retrieval_embeddings,
                                     profile.seed + 1, centres, profile.seed)
        exact = ann_metrics.exact_top_k(catalog_queries, catalog, RECALL_K, block=BATCH_SIZE)
        paths = {name: out / f"{name}-{n}.npy" for name in ("catalog", "queries", "exact")}
        np.save(paths["catalog"], catalog)
        np.save(paths["queries"], catalog_queries)
        np.save(paths["exact"], exact)
        del catalog
        say(f"retrieval: {n:,} x {profile.retrieval_dim} {profile.retrieval_embeddings} embeddings and exact "
            f"top-{RECALL_K} of {len(catalog_queries)} queries in {time.perf_counter() - began:.1f} s")
        leaves = num_leaves(n)
        results = []
        for threads in profile.threads:
            job = {"catalog": n, "threads": threads, "k": RECALL_K, "batch_size": BATCH_SIZE,
                   "loop_s": profile.retrieval_loop_s, "catalog_path": str(paths["catalog"]),
                   "queries_path": str(paths["queries"]), "exact_path": str(paths["exact"]),
                   "num_leaves": leaves, "leaf_fractions": profile.leaf_fractions, "reorder": profile.reorder,
                   "training_iterations": scann.scann_training_iterations,
                   "dimensions_per_block": scann.scann_dimensions_per_block,
                   "roofline_copy_mb": profile.roofline_copy_mb, "roofline_matmul_n": profile.roofline_matmul_n}
            results.append(run_worker(job, out, say))
        catalogs.append(summarize_catalog(n, profile.retrieval_dim, leaves, scann.scann_dimensions_per_block, results))
        for path in paths.values():
            path.unlink()
    return {"embeddings": profile.retrieval_embeddings, "dim": profile.retrieval_dim, "k": RECALL_K,
            "queries": profile.retrieval_queries, "batch_size": BATCH_SIZE, "threads": profile.threads,
            "recall_targets": list(RECALL_TARGETS), "leaf_fractions": profile.leaf_fractions,
            "reorder": profile.reorder, "scann_config": {
                "num_leaves": "round(sqrt(N))", "training_iterations": scann.scann_training_iterations,
                "dimensions_per_block": scann.scann_dimensions_per_block, "score": "asymmetric hashing (lut16)",
                "reorder": "exact float32, up to max(reorder)"},
            "threads_meaning": "threads each library may use inside one call (BLAS, TF intra-op, ScaNN's pool for "
                               "batches); a single ScaNN query runs on one thread",
            "catalogs": catalogs}

