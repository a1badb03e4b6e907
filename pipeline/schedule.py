"""Schedules a compiled Kubeflow pipeline as a KFP recurring run (e.g. the daily retraining).

    python -m pipeline.schedule --spec music_retrieval.json --cron "0 3 * * *" --host https://kfp.example.com

`--spec` is the PipelineJob JSON that TFX's KubeflowV2DagRunner writes. The real `kfp.Client` sends the
request; this module only turns what users write (5-field cron, KEY=VALUE parameters, the TFX file) into
what the KFP v2beta1 API expects, and checks it first so mistakes fail here with a message, not on the cluster.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys
import tempfile
from typing import Any, Mapping, Sequence

import yaml

KFP_SCHEMA_VERSION = "2.1.0"
"""The only pipeline spec schema the KFP v2 backend accepts ("KFP only supports schema version 2.1.0")."""
MAX_CONCURRENCY_RANGE = (1, 10)
"""What the KFP API accepts for a recurring run's max_concurrency."""
DEFAULT_RUN_NAME_SUFFIX = " daily"
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?\-]+$")
"""Characters robfig/cron (KFP's scheduler) accepts in a field: numbers, names (MON, JAN), * / , ? -."""


class ScheduleError(ValueError):
    """A problem the user fixes (spec file, cron, parameters) or that the KFP API reported."""


@dataclasses.dataclass(frozen=True)
class CompiledSpec:
    """What a TFX-compiled PipelineJob file holds that a recurring run needs."""

    path: pathlib.Path
    pipeline_name: str
    pipeline_spec: dict[str, Any]
    pipeline_root: str | None
    """runtimeConfig.gcsOutputDirectory: the kfp client does not read it from the file, so it is passed on."""
    parameter_values: dict[str, Any]
    """runtimeConfig.parameterValues bound at compile time (KFP rejects a run that leaves one unset)."""
    parameter_types: dict[str, str]
    """The root's declared parameters and their types (STRING, NUMBER_INTEGER, ...)."""


@dataclasses.dataclass(frozen=True)
class ScheduleRequest:
    """One recurring run to create, already validated."""

    experiment: str
    name: str
    cron: str
    """KFP's 6-field form, seconds first."""
    max_concurrency: int
    catchup: bool
    enabled: bool
    namespace: str | None
    pipeline_root: str | None
    parameters: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RecurringRunInfo:
    """What the API answered, for the printout."""

    recurring_run_id: str
    name: str
    experiment_id: str
    experiment_name: str
    cron: str
    mode: str


def kfp_cron(text: str) -> str:
    """'0 3 * * *' -> '0 0 3 * * *': KFP's scheduler reads 6 fields with seconds first, so an unconverted
    5-field cron would silently mean 'minute 3 of every hour'. 6 fields pass unchanged."""
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"cron {text!r} has {len(fields)} fields; write the standard 5 fields 'minute hour day-of-month "
            "month day-of-week' (e.g. '0 3 * * *' for 03:00 daily) or KFP's 6 fields with seconds first"
        )
    bad = [field for field in fields if not CRON_FIELD.match(field)]
    if bad:
        raise ScheduleError(f"cron {text!r}: field(s) {', '.join(map(repr, bad))} are not cron syntax")
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def _read_json(path: pathlib.Path) -> Any:
    if not path.is_file():
        raise ScheduleError(
            f"spec file {path} not found; compile the pipeline with KubeflowV2DagRunner (pipeline/kubeflow_runner.py) "
            "and pass the JSON file it writes"
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ScheduleError(f"spec file {path} is not valid JSON: {error}") from error


def load_spec(path: pathlib.Path) -> CompiledSpec:
    """Reads a KubeflowV2DagRunner PipelineJob file and checks what the KFP API would reject later."""
    job = _read_json(path)
    if not isinstance(job, dict) or not isinstance(job.get("pipelineSpec"), dict):
        raise ScheduleError(
            f"spec file {path} is not a compiled Kubeflow PipelineJob: expected a JSON object with 'pipelineSpec' "
            "(the file KubeflowV2DagRunner writes)"
        )
    spec = job["pipelineSpec"]
    name = spec.get("pipelineInfo", {}).get("name")
    if not name:
        raise ScheduleError(f"spec file {path}: pipelineSpec.pipelineInfo.name is missing")
    if not isinstance(spec.get("root"), dict):
        raise ScheduleError(f"spec file {path}: pipelineSpec.root is missing")
    version = spec.get("schemaVersion")
    if version != KFP_SCHEMA_VERSION:
        raise ScheduleError(
            f"spec file {path} has pipeline spec schema {version!r}, the KFP API only accepts {KFP_SCHEMA_VERSION!r}; "
            "compile with KubeflowV2DagRunnerConfig(use_pipeline_spec_2_1=True)"
        )
    runtime = job.get("runtimeConfig", {})
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return CompiledSpec(
        path=path,
        pipeline_name=name,
        pipeline_spec=spec,
        pipeline_root=runtime.get("gcsOutputDirectory") or None,
        parameter_values=dict(runtime.get("parameterValues", {})),
        parameter_types={key: value.get("parameterType", "") for key, value in declared.items()},
    )


def _typed_value(key: str, text: str, parameter_type: str) -> Any:
    """KFP checks each value's JSON type against the declared parameterType, so '5' must be sent as 5."""
    try:
        if parameter_type == "NUMBER_INTEGER":
            return int(text)
        if parameter_type == "NUMBER_DOUBLE":
            return float(text)
        if parameter_type in ("LIST", "STRUCT"):
            value = json.loads(text)
            if not isinstance(value, list if parameter_type == "LIST" else dict):
                raise ValueError(f"not a JSON {parameter_type.lower()}")
            return value
    except ValueError as error:
        raise ScheduleError(f"--param {key}={text}: {key} is {parameter_type} ({error})") from error
    if parameter_type == "BOOLEAN":
        if text.lower() not in ("true", "false"):
            raise ScheduleError(f"--param {key}={text}: {key} is BOOLEAN, write true or false")
        return text.lower() == "true"
    return text


def parse_params(pairs: Sequence[str], parameter_types: Mapping[str, str]) -> dict[str, Any]:
    """KEY=VALUE pairs -> typed values; a key the pipeline does not declare is an error (the API refuses it too)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ScheduleError(f"--param {pair!r}: write KEY=VALUE")
        if key not in parameter_types:
            declared = ", ".join(sorted(parameter_types)) or "none"
            raise ScheduleError(f"--param {key}: the pipeline declares no such parameter (declared: {declared})")
        values[key] = _typed_value(key, text, parameter_types[key])
    return values


def _write_package(spec: CompiledSpec, folder: pathlib.Path) -> pathlib.Path:
    """The kfp client loads only .yaml/.zip/.tar.gz packages holding a bare PipelineSpec, not TFX's JSON."""
    package = folder / "pipeline.yaml"
    package.write_text(yaml.safe_dump(spec.pipeline_spec, sort_keys=False))
    return package


def schedule(client: Any, spec: CompiledSpec, request: ScheduleRequest) -> RecurringRunInfo:
    """Finds or creates the experiment, then creates the recurring run; API errors propagate."""
    experiment = client.create_experiment(request.experiment, namespace=request.namespace)
    with tempfile.TemporaryDirectory(prefix="kfp-schedule-") as folder:
        run = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=request.name,
            cron_expression=request.cron,
            max_concurrency=request.max_concurrency,
            no_catchup=not request.catchup,
            params=request.parameters,
            pipeline_package_path=str(_write_package(spec, pathlib.Path(folder))),
            enabled=request.enabled,
            pipeline_root=request.pipeline_root,
        )
    if not run.recurring_run_id:
        raise ScheduleError(f"the KFP API answered without a recurring run id: {run}")
    return RecurringRunInfo(
        recurring_run_id=run.recurring_run_id,
        name=run.display_name,
        experiment_id=experiment.experiment_id,
        experiment_name=experiment.display_name,
        cron=request.cron,
        mode=str(run.mode),
    )


def api_error_message(error: Exception) -> str:
    """The server's own message from an ApiException body ({"error"|"message": ...}), else the exception."""
    body = getattr(error, "body", None)
    try:
        parsed = json.loads(body) if body else None
    except (TypeError, json.JSONDecodeError):
        parsed = None
    if isinstance(parsed, dict) and (parsed.get("message") or parsed.get("error")):
        message = parsed.get("message") or parsed.get("error")
    else:
        message = body or getattr(error, "reason", None) or str(error)
    status = getattr(error, "status", None)
    return f"HTTP {status}: {message}" if status else str(message)


def _max_concurrency(text: str) -> int:
    low, high = MAX_CONCURRENCY_RANGE
    value = int(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is outside {low}-{high}, the range the KFP API accepts")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.schedule", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=pathlib.Path, required=True,
                        help="PipelineJob JSON written by KubeflowV2DagRunner (pipeline spec schema 2.1.0)")
    parser.add_argument("--cron", required=True,
                        help="when to run: standard 5-field cron, e.g. '0 3 * * *' = 03:00 daily in the KFP "
                             "scheduler's time zone (usually UTC); 6 fields (seconds first) pass unchanged")
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kfp.example.com")
    parser.add_argument("--experiment", help="experiment to put the runs in, created if missing "
                                             "(default: the pipeline name from the spec)")
    parser.add_argument("--name", help="recurring run name (default: '<pipeline name> daily')")
    parser.add_argument("--namespace", help="Kubernetes namespace (multi-user KFP); default: the client's")
    parser.add_argument("--max-concurrency", type=_max_concurrency, default=1,
                        help="runs of this schedule allowed at once, 1-10 (default: 1)")
    parser.add_argument("--catchup", action=argparse.BooleanOptionalAction, default=False,
                        help="after a pause, start one run per missed interval (default: no, only the latest)")
    parser.add_argument("--disable", action="store_true",
                        help="create the schedule paused (default: enabled)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline parameter declared by the spec, overrides the compiled value; repeatable")
    parser.add_argument("--pipeline-root",
                        help="where runs write artifacts (default: the spec's runtimeConfig.gcsOutputDirectory)")
    parser.add_argument("--existing-token", help="token for the KFP API, sent as 'Authorization: Bearer TOKEN' (optional)")
    return parser


def _request(args: argparse.Namespace, spec: CompiledSpec) -> ScheduleRequest:
    return ScheduleRequest(
        experiment=args.experiment or spec.pipeline_name,
        name=args.name or spec.pipeline_name + DEFAULT_RUN_NAME_SUFFIX,
        cron=kfp_cron(args.cron),
        max_concurrency=args.max_concurrency,
        catchup=args.catchup,
        enabled=not args.disable,
        namespace=args.namespace,
        pipeline_root=args.pipeline_root or spec.pipeline_root,
        parameters={**spec.parameter_values, **parse_params(args.param, spec.parameter_types)},
    )


def _connect(host: str, namespace: str | None, token: str | None) -> Any:
    import kfp  # here, so --help and input errors do not pay for importing the client

    return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        request = _request(args, spec)
    except ScheduleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import kfp_server_api
    import urllib3

    try:
        info = schedule(_connect(args.host, args.namespace, args.existing_token), spec, request)
    except kfp_server_api.ApiException as error:
        print(f"error: the KFP API at {args.host} refused: {api_error_message(error)}", file=sys.stderr)
        return 1
    except urllib3.exceptions.HTTPError as error:
        print(f"error: cannot reach the KFP API at {args.host}: {error}", file=sys.stderr)
        return 1
    except ScheduleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"recurring run id: {info.recurring_run_id}")
    print(f"recurring run name: {info.name}")
    print(
        f"  experiment {info.experiment_name} ({info.experiment_id}), cron {info.cron!r} (KFP form, seconds first), "
        f"mode {info.mode}, max concurrency {request.max_concurrency}, {'catchup' if request.catchup else 'no catchup'}, "
        f"pipeline root {request.pipeline_root or '(server default)'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
