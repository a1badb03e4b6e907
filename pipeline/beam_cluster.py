"""A portable Beam cluster on 127.0.0.1: a job service and an external SDK worker pool, each its own process.

    python -m pipeline.beam_cluster start --dir DIR    # prints the Beam flags that run a pipeline on it
    python -m pipeline.beam_cluster stop --dir DIR
    python -m pipeline.beam_cluster args --dir DIR     # the flags again, one a line

Why this and not Flink: Beam's Flink (and Spark) job-server jars are not served by the Maven registry this
project can reach (docs/running-at-scale.md says exactly what was tried). This is Beam's own portable set-up
with the same seams a Flink deployment has: the pipeline crosses gRPC to a job service as a proto, user code
is unpickled in SDK workers that a worker pool starts as separate processes (`--environment_type=EXTERNAL`,
the way Flink-on-Kubernetes runs Python), with their own working directory. A Flink job server would take
the same `--job_endpoint` and `--environment_config` flags.

DIR holds cluster.json (ports and process ids) and logs/ (one file per process). `stop` ends the processes
it started, by process group, and nothing else.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator, Sequence

HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
LOG_DIR = "logs"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


class ClusterError(RuntimeError):
    """The cluster could not be started, reached or stopped."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What `start` wrote to DIR/cluster.json."""

    job_port: int
    worker_pool_port: int
    pids: dict[str, int]
    log_dir: str

    def beam_args(self) -> list[str]:
        """The Beam flags that send a pipeline to this cluster's job service and its external worker pool."""
        return [
            "--runner=PortableRunner",
            f"--job_endpoint={HOST}:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config={HOST}:{self.worker_pool_port}",
        ]


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; the short race with other programs is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, name: str, log: pathlib.Path, timeout_s: float) -> None:
    """Blocks until `port` accepts a connection; raises with the log's tail if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{name} exited with code {process.returncode} before listening; log {log}:\n"
                               + log_tail(log))
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return
        time.sleep(0.2)
    raise ClusterError(f"{name} did not listen on {HOST}:{port} within {timeout_s:.0f}s; log {log}:\n" + log_tail(log))


def log_tail(log: pathlib.Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def worker_environment() -> dict[str, str]:
    """The pool starts SDK workers as `python -c ...` from PATH: put this interpreter's folder first, so workers
    run the project's venv (and its start-up hook), and let them import our modules by name from any cwd."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *[p for p in paths if p != str(PROJECT_ROOT)]])
    return env


def spawn(name: str, argv: list[str], directory: pathlib.Path,
          env: dict[str, str]) -> tuple[subprocess.Popen, pathlib.Path]:
    """Starts `argv` in its own session (so `stop` can end it with its children), output to logs/NAME.log."""
    log = directory / LOG_DIR / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env=env, start_new_session=True)
    return process, log


def start(directory: pathlib.Path) -> Cluster:
    """Starts the job service and the worker pool, waits until both listen, and records them in DIR."""
    directory = directory.resolve()
    if (directory / STATE_FILE).exists():
        raise ClusterError(f"{directory / STATE_FILE} exists: a cluster may be running; "
                           f"run `stop --dir {directory}` first")
    (directory / LOG_DIR).mkdir(parents=True, exist_ok=True)
    job_port, pool_port = free_port(), free_port()
    env = worker_environment()
    commands = {
        "job_service": [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                        f"--port={job_port}", f"--staging_dir={directory / 'staging'}"],
        "worker_pool": [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        f"--service_port={pool_port}"],
    }
    ports = {"job_service": job_port, "worker_pool": pool_port}
    started: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            process, log = spawn(name, argv, directory, env)
            started[name] = process
            wait_for_port(ports[name], process, name, log, START_TIMEOUT_S)
    except BaseException:
        for process in started.values():
            end_group(process.pid)
        raise
    cluster = Cluster(job_port, pool_port, {name: p.pid for name, p in started.items()}, str(directory / LOG_DIR))
    (directory / STATE_FILE).write_text(json.dumps(dataclasses.asdict(cluster), indent=2))
    return cluster


def load(directory: pathlib.Path) -> Cluster:
    state = directory / STATE_FILE
    if not state.exists():
        raise ClusterError(f"no cluster recorded in {directory} (no {STATE_FILE}); start one with "
                           f"`python -m pipeline.beam_cluster start --dir {directory}`")
    return Cluster(**json.loads(state.read_text()))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def end_group(pid: int) -> None:
    """SIGTERM to the process group `pid` leads (the service and the workers it forked), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent (the in-process fixture)
        if not alive(pid):
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def stop(directory: pathlib.Path) -> list[str]:
    """Ends the processes recorded in DIR and removes the record; returns the names of those that were running."""
    cluster = load(directory.resolve())
    running = [name for name, pid in cluster.pids.items() if alive(pid)]
    for pid in cluster.pids.values():
        end_group(pid)
    still = [name for name, pid in cluster.pids.items() if alive(pid)]
    if still:
        raise ClusterError(f"could not stop {', '.join(still)}")
    (directory.resolve() / STATE_FILE).unlink()
    return running


@contextlib.contextmanager
def running(directory: pathlib.Path) -> Iterator[Cluster]:
    """A cluster for the length of a `with` block, stopped however the block ends."""
    cluster = start(directory)
    try:
        yield cluster
    finally:
        stop(directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.beam_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop", "args"))
    parser.add_argument("--dir", type=pathlib.Path, required=True, help="folder for cluster.json and logs/")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            cluster = start(args.dir)
            print(f"beam cluster up: job service {HOST}:{cluster.job_port}, "
                  f"worker pool {HOST}:{cluster.worker_pool_port}, logs in {cluster.log_dir}")
            print("run a pipeline on it with: " + " ".join(f"--beam-arg={arg}" for arg in cluster.beam_args()))
        elif args.action == "stop":
            was = stop(args.dir)
            print(f"beam cluster stopped ({', '.join(was) if was else 'nothing was still running'})")
        else:
            print("\n".join(load(args.dir).beam_args()))
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
