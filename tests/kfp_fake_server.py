"""A fake KFP v2beta1 API on loopback for the scheduling tests: the real `kfp.Client` talks to it over HTTP.

It implements only what `kfp.Client` calls to create a recurring run (healthz, experiments list/create/get,
recurringruns create), records every request, answers with bodies shaped like the real API's (snake_case
JSON, int64 as strings, errors as {"error", "code", "message", "details"}), and applies the checks of the
real server that a wrong request would hit (pipeline spec schema 2.1.0, max_concurrency 1-10, 6-field cron,
only declared parameters, an existing experiment). Anything else answers 404 and is recorded.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
import urllib.parse
import uuid
from typing import Any

API = "/apis/v2beta1"
EXPERIMENTS = f"{API}/experiments"
RECURRING_RUNS = f"{API}/recurringruns"
HEALTHZ = f"{API}/healthz"
CREATED_AT = "2026-01-01T03:00:00Z"
UNSET_TIME = "1970-01-01T00:00:00Z"
# google.rpc codes the API returns
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, INTERNAL = 3, 5, 6, 13


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    known_route: bool


class ApiError(Exception):
    """An error answer: HTTP status, google.rpc code and message, as the API's grpc-gateway words it."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class UnknownRoute(ApiError):
    """A request to an endpoint the fake does not implement (answered 404, listed by `unhandled()`)."""


class FakeKfpApi:
    """State and routes; `with FakeKfpApi() as api:` serves it on 127.0.0.1 and a free port (`api.host`)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self._failures: dict[tuple[str, str], tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    # --- test controls ---
    def add_experiment(self, display_name: str, namespace: str = "") -> dict[str, Any]:
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": display_name,
            "created_at": CREATED_AT,
            "namespace": namespace,
            "storage_state": "AVAILABLE",
            "last_run_created_at": UNSET_TIME,
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def fail(self, method: str, path: str, status: int, message: str) -> None:
        """The next request to (method, path) gets this error, as the real API words errors."""
        self._failures[(method, path)] = (status, message)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def unhandled(self) -> list[Recorded]:
        """Requests to endpoints the fake does not implement (the client called something unexpected)."""
        return [r for r in self.requests if not r.known_route]

    @property
    def host(self) -> str:
        assert self._server is not None, "use the fake as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeKfpApi:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._handle(self, "GET")

            def do_POST(self) -> None:
                api._handle(self, "POST")

            def do_DELETE(self) -> None:
                api._handle(self, "DELETE")

            def do_PATCH(self) -> None:
                api._handle(self, "PATCH")

            def do_PUT(self) -> None:
                api._handle(self, "PUT")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # --- HTTP plumbing ---
    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            known_route = True
            try:
                failure = self._failures.pop((method, url.path), None)
                if failure:
                    raise ApiError(failure[0], INVALID_ARGUMENT, failure[1])
                status, answer = 200, self._route(method, url.path, query, body)
            except ApiError as error:
                known_route = not isinstance(error, UnknownRoute)
                status = error.status
                answer = {"error": error.message, "code": error.code, "message": error.message, "details": []}
            self.requests.append(Recorded(method, url.path, query, body, status, known_route))
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> dict[str, Any]:
        if (method, path) == ("GET", HEALTHZ):
            return {"multi_user": False, "pipeline_store": "database"}
        if (method, path) == ("GET", EXPERIMENTS):
            return self._list_experiments(query)
        if (method, path) == ("POST", EXPERIMENTS):
            return self._create_experiment(body)
        match = re.fullmatch(re.escape(EXPERIMENTS) + r"/([^/:]+)", path)
        if method == "GET" and match:
            return self._experiment(match.group(1))
        if (method, path) == ("POST", RECURRING_RUNS):
            return self._create_recurring_run(body)
        raise UnknownRoute(404, NOT_FOUND, f"Not Found: {method} {path}")

    # --- endpoints ---
    def _list_experiments(self, query: dict[str, list[str]]) -> dict[str, Any]:
        found = list(self.experiments.values())
        namespace = query.get("namespace", [""])[0]
        if namespace:
            found = [e for e in found if e["namespace"] == namespace]
        for predicate in json.loads(query["filter"][0])["predicates"] if "filter" in query else []:
            # protojson takes the enum by name or number; kfp.Client sends the number (EQUALS = 1).
            if predicate["operation"] not in ("EQUALS", 1) or predicate["key"] != "display_name":
                raise ApiError(400, INVALID_ARGUMENT, f"fake supports only display_name EQUALS: {predicate}")
            found = [e for e in found if e["display_name"] == predicate["stringValue"]]
        # The real API leaves empty fields out of its JSON: no experiments -> {}.
        return {"experiments": found, "total_size": len(found)} if found else {}

    def _create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body or {}).get("display_name")
        if not name:
            raise ApiError(400, INVALID_ARGUMENT, "Experiment name is empty. Please specify a valid experiment name.")
        namespace = body.get("namespace") or ""
        if any(e["display_name"] == name and e["namespace"] == namespace for e in self.experiments.values()):
            raise ApiError(409, ALREADY_EXISTS, f"Failed to create a new experiment: experiment {name} already exists")
        return self.add_experiment(name, namespace)

    def _experiment(self, experiment_id: str) -> dict[str, Any]:
        if experiment_id not in self.experiments:
            raise ApiError(404, NOT_FOUND, f"Failed to get experiment: experiment {experiment_id} not found")
        return self.experiments[experiment_id]

    def _create_recurring_run(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_recurring_run(body)
        if body.get("experiment_id") not in self.experiments:
            raise ApiError(404, NOT_FOUND, f"Failed to fetch experiment {body.get('experiment_id')}: not found")
        run = {
            **body,
            "recurring_run_id": str(uuid.uuid4()),
            "max_concurrency": str(body["max_concurrency"]),
            "no_catchup": bool(body.get("no_catchup", False)),
            "namespace": self.experiments[body["experiment_id"]]["namespace"],
            "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED",
            "created_at": CREATED_AT,
            "updated_at": CREATED_AT,
        }
        self.recurring_runs[run["recurring_run_id"]] = run
        return run


def _check_recurring_run(body: dict[str, Any]) -> None:
    """The real server's checks (backend/src/apiserver: recurring run server, v2 template) on what we send."""
    if not body or not body.get("display_name"):
        raise ApiError(400, INVALID_ARGUMENT, "Recurring run display name is empty")
    spec = body.get("pipeline_spec")
    if not isinstance(spec, dict):
        raise ApiError(400, INVALID_ARGUMENT, "Recurring run has no pipeline spec or pipeline version reference")
    version = spec.get("schemaVersion")
    if version != "2.1.0":
        raise ApiError(500, INTERNAL, f"KFP only supports schema version 2.1.0, but the pipeline spec has version {version}")
    concurrency = int(body.get("max_concurrency", 0))
    if not 1 <= concurrency <= 10:
        raise ApiError(400, INVALID_ARGUMENT,
                       f"The max concurrency of the recurring run is out of range. Support 1-10. Received {concurrency}.")
    fields = body.get("trigger", {}).get("cron_schedule", {}).get("cron", "").split()
    if len(fields) != 6:  # robfig/cron would read 5 fields as seconds-first: the mistake this checks for
        raise ApiError(400, INVALID_ARGUMENT, f"Schedule cron is not a supported format: {len(fields)} fields, expected 6")
    _check_parameters(spec, body.get("runtime_config", {}).get("parameters", {}))


PARAMETER_JSON_TYPES = {"STRING": (str,), "NUMBER_INTEGER": (int, float), "NUMBER_DOUBLE": (int, float),
                        "BOOLEAN": (bool,), "LIST": (list,), "STRUCT": (dict,)}


def _check_parameters(spec: dict[str, Any], values: dict[str, Any]) -> None:
    """validatePipelineJobInputs: every declared parameter set (or optional/defaulted), of its type, no extras."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, definition in declared.items():
        if name not in values:
            if not definition.get("isOptional") and "defaultValue" not in definition:
                raise ApiError(400, INVALID_ARGUMENT,
                               f"parameter {name} is not optional, yet has neither default value nor user provided value")
            continue
        kind = definition.get("parameterType", "")
        value = values[name]
        wrong_bool = isinstance(value, bool) and kind != "BOOLEAN"
        if kind not in PARAMETER_JSON_TYPES or wrong_bool or not isinstance(value, PARAMETER_JSON_TYPES[kind]):
            raise ApiError(400, INVALID_ARGUMENT, f"input parameter {name} requires type {kind}, got {value!r}")
    extra = sorted(set(values) - set(declared))
    if extra:
        raise ApiError(400, INVALID_ARGUMENT, f"parameter(s) provided are not required by pipeline: {', '.join(extra)}")
