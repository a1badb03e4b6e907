"""`python -m serving.server` as a child process on loopback: start, read its ports, wait, stop with SIGTERM.

Used by the demo, the benchmarks and the tests, so all of them run the real server the same way.
"""
from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

import grpc
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ADDRESS_LINE = re.compile(r"serving: (gRPC|REST) on ([0-9.]+|\[[0-9a-fA-F:]*\]|localhost):(\d+)")
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
T = TypeVar("T")


class ServerProcess:
    """`python -m serving.server` on loopback, its output in a log file; stopped (and reaped) on exit."""

    def __init__(self, args: Sequence[str], log_path: pathlib.Path, rest: bool = True,
                 module: Sequence[str] = ("serving.server",)) -> None:
        """`module`: the module to run and its leading arguments (a wrapper of serving.server, e.g. a profiler)."""
        command = [sys.executable, "-m", *module, "--host", "127.0.0.1", "--port", "0", *args]
        if rest:
            command += ["--rest_api_port", "auto"]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.grpc_port: Optional[int] = None
        self.rest_port: Optional[int] = None
        self._channel: Optional[grpc.Channel] = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_ports(self, timeout_s: float = 90.0) -> "ServerProcess":
        """Reads the bound ports from the server's log (it prints them once it listens)."""
        deadline = time.monotonic() + timeout_s
        want_rest = "--rest_api_port" in self.process.args
        while time.monotonic() < deadline:
            for kind, _, port in ADDRESS_LINE.findall(self.log()):
                if kind == "gRPC":
                    self.grpc_port = int(port)
                else:
                    self.rest_port = int(port)
            if self.grpc_port and (self.rest_port or not want_rest):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"server did not print its ports in {timeout_s} s:\n{self.log()[-4000:]}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    def prediction_stub(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel())

    def model_stub(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel())

    def version_states(self, model_name: str) -> dict[int, get_model_status_pb2.ModelVersionStatus]:
        """GetModelStatus as {version: ModelVersionStatus}; {} while the model has no versions yet."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=model_name))
        try:
            response = self.model_stub().GetModelStatus(request, timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise
        return {status.version: status for status in response.model_version_status}

    def wait_for_state(self, version: int, state: int, model_name: str,
                       timeout_s: float = 60.0) -> get_model_status_pb2.ModelVersionStatus:
        def reached() -> Optional[get_model_status_pb2.ModelVersionStatus]:
            status = self.version_states(model_name).get(version)
            return status if status is not None and status.state == state else None
        return wait_for(reached, timeout_s, f"{model_name} version {version} in state {state}", self.log)

    def wait_for_available(self, model_name: str, timeout_s: float = 120.0) -> int:
        """Waits until some version of `model_name` is AVAILABLE; returns that version."""
        def available() -> Optional[int]:
            versions = [v for v, status in self.version_states(model_name).items() if status.state == AVAILABLE]
            return max(versions) if versions else None
        return wait_for(available, timeout_s, f"{model_name} to have an AVAILABLE version", self.log)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; kills only if the server ignores it. Returns the exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_for(predicate: Callable[[], Optional[T]], timeout_s: float, what: str,
             context: Callable[[], str] = lambda: "") -> T:
    """Polls `predicate` until it returns something truthy; fails with `what` (and the server log) after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}\n{context()[-4000:]}")
