"""Model versions under TF Serving's layout: discover, load, warm up, swap in, unload, and report status.

`<base_path>/<version>/` holds one SavedModel per integer version. Each `ModelManager` polls its base path
(`--file_system_poll_wait_seconds`) and keeps the versions its policy aspires to (TF Serving's default: the
latest one) loaded, with TF Serving's availability-preserving order: a new version is loaded and warmed up
(its `assets.extra/tf_serving_warmup_requests` replayed) *before* it takes traffic, and the version it
replaces is unloaded only afterwards, once its in-flight requests have finished. So no request fails during
a swap. A version that fails to load or warm up never replaces a good one: it ends in END with the error in
GetModelStatus, and is retried only if its files change. A version directory still being written (no
saved_model.pb yet, or files still changing between two polls) is waited for, not failed. A loaded version
whose folder disappears (a rollback) keeps serving from memory until the version replacing it is AVAILABLE.

Version states are TF Serving's: START (aspired, waiting), LOADING, AVAILABLE, UNLOADING, END.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import logging
import posixpath
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import message as protobuf_message
from tensorflow.python.framework import op_def_registry
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, prediction_log_pb2

from serving import DEFAULT_SIGNATURE, ServingError, tensors

logger = logging.getLogger("serving")

_State = get_model_status_pb2.ModelVersionStatus
START, LOADING, AVAILABLE, UNLOADING, END = _State.START, _State.LOADING, _State.AVAILABLE, _State.UNLOADING, _State.END
STATE_NAMES = {START: "START", LOADING: "LOADING", AVAILABLE: "AVAILABLE", UNLOADING: "UNLOADING", END: "END"}

WARMUP_PATH = ("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit (warmup_util.cc)
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
MAX_VERSION = 2 ** 63 - 1  # versions are int64 in every proto; larger folder names are not versions
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
# Custom-op packages to import when a SavedModel uses ops of theirs (by op-name prefix), only then.
CUSTOM_OP_MODULES = {"Scann": "scann.scann_ops.py.scann_ops"}


def status_code(tf_code: int) -> grpc.StatusCode:
    """tensorflow.error.Code and gRPC codes share their numbers."""
    return _GRPC_CODES.get(int(tf_code), grpc.StatusCode.UNKNOWN)


def as_serving_error(error: BaseException, what: str) -> ServingError:
    """A status for any failure while loading or running a model: TF's own code when it has one."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        return ServingError(status_code(error.error_code), f"{what}: {error.message}")
    if isinstance(error, protobuf_message.DecodeError) or (isinstance(error, IOError) and "parse" in str(error)):
        return ServingError(grpc.StatusCode.DATA_LOSS, f"{what}: {error}")
    if isinstance(error, IOError):
        return ServingError(grpc.StatusCode.NOT_FOUND, f"{what}: {error}")
    if isinstance(error, (TypeError, ValueError)):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {error}")
    return ServingError(grpc.StatusCode.INTERNAL, f"{what}: {type(error).__name__}: {error}")


def without_path(message: str, base_path: str) -> str:
    """A message for clients: the model's base path (a server's filesystem layout) replaced by `<base_path>`."""
    base = base_path.rstrip("/")
    return message.replace(base, "<base_path>") if base else message


# --- One loaded version ---------------------------------------------------------------------------------

FlatCall = Callable[[list[tf.Tensor]], Sequence[tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature and the input/output specs requests are checked against.

    `flat_call`, when the loaded function allows it, runs the signature's graph on input tensors in
    `input_order` and returns output tensors in `output_order`, skipping the structured-call layer (binding
    keyword arguments to the function type, re-resolving the captured variables) that costs ~0.35 ms per
    request (docs/serving.md, "Where the time goes")."""

    name: str
    function: Any
    inputs: Mapping[str, tf.TensorSpec]
    outputs: Mapping[str, tf.TensorSpec]
    input_order: tuple[str, ...] = ()
    output_order: tuple[str, ...] = ()
    flat_call: Optional[FlatCall] = None

    @property
    def batchable(self) -> bool:
        """Every input and output has a leading batch dimension, so requests can be stacked and split."""
        specs = list(self.inputs.values()) + list(self.outputs.values())
        return bool(self.inputs) and all(spec.shape.rank is not None and spec.shape.rank >= 1 and spec.shape[0] is None
                                         for spec in specs)


def flat_signature_call(function: Any, inputs: Mapping[str, tf.TensorSpec], outputs: Mapping[str, tf.TensorSpec]
                        ) -> Optional[tuple[tuple[str, ...], tuple[str, ...], FlatCall]]:
    """(input order, output order, call) straight into a loaded signature's graph function, or None when the
    function is not the plain kind this relies on (then the structured call is used, which is always right).

    A loaded signature takes only named tensors and returns a dict of tensors; its graph function takes them in
    the function type's parameter order, followed by the captured resources (variables, tables), which do not
    change while the version is loaded; its outputs come in `tf.nest` order (sorted names)."""
    inference = getattr(function, "_inference_function", None)
    function_type = getattr(function, "function_type", None)
    if inference is None or function_type is None or not hasattr(inference, "call_flat"):
        return None
    parameters = function_type.parameters
    input_order = tuple(parameters)
    if set(input_order) != set(inputs) or not all(isinstance(parameter.type_constraint, tf.TensorSpec)
                                                  for parameter in parameters.values()):
        return None
    output_order = tuple(tf.nest.flatten({name: name for name in outputs}))
    if len(function_type.flat_outputs) != len(output_order):
        return None
    captured = list(function.captured_inputs)
    if not all(isinstance(value, tf.Tensor) for value in captured):  # e.g. distributed variables
        return None

    def call(tensors: list[tf.Tensor]) -> Sequence[tf.Tensor]:
        return inference.call_flat(*tensors, *captured)

    return input_order, output_order, call


class Servable:
    """One loaded version. Counts its in-flight requests so an unload can wait for them."""

    def __init__(self, model_name: str, version: int, path: str, loaded: Any, signatures: dict[str, Signature],
                 signature_defs: get_model_metadata_pb2.SignatureDefMap) -> None:
        self.model_name = model_name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs
        self._loaded = loaded  # owns the variables and tables the signatures use
        self._signatures = signatures
        self._in_flight = 0
        self._drained = threading.Condition()

    @property
    def signature_names(self) -> list[str]:
        return sorted(self._signatures)

    def signature(self, name: str) -> Signature:
        signature = self._signatures.get(name or DEFAULT_SIGNATURE)
        if signature is None:  # TF Serving's code and message (predict_util.cc)
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{name or DEFAULT_SIGNATURE}" not found. '
                               f"This model has: {', '.join(self.signature_names)}")
        return signature

    def run(self, signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls the signature on checked inputs; a TF error keeps its status code (INVALID_ARGUMENT, ...)."""
        try:
            if signature.flat_call is not None:
                values = signature.flat_call([tf.constant(arrays[name], dtype=signature.inputs[name].dtype)
                                              for name in signature.input_order])
                return {name: value.numpy() for name, value in zip(signature.output_order, values)}
            feeds = {name: tf.constant(array, dtype=signature.inputs[name].dtype) for name, array in arrays.items()}
            outputs = signature.function(**feeds)
            return {name: value.numpy() for name, value in outputs.items()}
        except Exception as error:  # re-raised as the status TF Serving would answer with
            failure = as_serving_error(error, f"{self.model_name} version {self.version} signature "
                                              f"'{signature.name}'")
            raise ServingError(failure.code, without_path(failure.message, posixpath.dirname(self.path))) from error

    def enter(self) -> None:
        with self._drained:
            self._in_flight += 1

    def exit(self) -> None:
        with self._drained:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.notify_all()

    def drain(self) -> None:
        """Waits for in-flight requests (new ones can no longer reach this servable)."""
        with self._drained:
            while self._in_flight:
                if not self._drained.wait(10.0):
                    logger.info("%s version %d: still waiting for %d in-flight requests before unloading",
                                self.model_name, self.version, self._in_flight)

    def release(self) -> None:
        self._signatures = {}
        self._loaded = None


def _graph_ops(meta_graph: Any) -> set[str]:
    ops = {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return ops - {function.signature.name for function in meta_graph.graph_def.library.function}


def ensure_custom_ops(meta_graph: Any, path: str) -> None:
    """Registers custom ops the graph needs (ScaNN's) by importing their package, only when it needs them."""
    missing = sorted(op for op in _graph_ops(meta_graph) if op_def_registry.get(op) is None)
    for prefix, module in CUSTOM_OP_MODULES.items():
        if any(op.startswith(prefix) for op in missing):
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"{path} uses ops {[op for op in missing if op.startswith(prefix)]}, which need "
                                   f"{module.split('.')[0]!r}; it does not import here: {error}") from error
            logger.info("registered custom ops from %s for %s", module, path)
    still_missing = sorted(op for op in missing if op_def_registry.get(op) is None)
    if still_missing:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"{path} uses ops this server does not have: {still_missing}")


def load_servable(model_name: str, version: int, path: str, tags: Sequence[str]) -> Servable:
    """Reads the SavedModel's MetaGraph for `tags` (its signature_defs are the metadata) and loads it."""
    saved_model = loader_impl.parse_saved_model(path)
    meta_graphs = [graph for graph in saved_model.meta_graphs if set(graph.meta_info_def.tags) == set(tags)]
    if not meta_graphs:
        found = [sorted(graph.meta_info_def.tags) for graph in saved_model.meta_graphs]
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"{path} has no MetaGraph with tags {sorted(tags)} (it has {found})")
    ensure_custom_ops(meta_graphs[0], path)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in meta_graphs[0].signature_def.items():
        signature_defs.signature_def[name].CopyFrom(signature_def)
    loaded = tf.saved_model.load(path, tags=list(tags))
    signatures: dict[str, Signature] = {}
    for name, function in loaded.signatures.items():
        args, kwargs = function.structured_input_signature
        if args:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"{path}: signature '{name}' takes positional inputs; serving needs named inputs")
        outputs = function.structured_outputs
        if not isinstance(outputs, Mapping):
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"{path}: signature '{name}' does not return a dict of named outputs")
        flat = flat_signature_call(function, kwargs, outputs)
        if flat is None:
            logger.info("%s: signature '%s' is called through its structured signature (no direct graph call)",
                        path, name)
            signatures[name] = Signature(name, function, dict(kwargs), dict(outputs))
        else:
            signatures[name] = Signature(name, function, dict(kwargs), dict(outputs), *flat)
    return Servable(model_name, version, path, loaded, signatures, signature_defs)


def warm_up(servable: Servable, iterations: int) -> int:
    """Replays the version's warm-up records `iterations` times (TF Serving's warm-up); returns how many ran.

    Without a warm-up file every signature runs once on placeholder inputs (batch 1, "" strings, zeros) so the
    first real request does not pay for tracing; a failure of those made-up inputs is logged, not fatal, because
    a model may reject them and still be fine. A failing shipped warm-up record fails the load, as in TF Serving.
    """
    path = posixpath.join(servable.path, *WARMUP_PATH)
    if not tf.io.gfile.exists(path):
        for signature in (servable.signature(name) for name in servable.signature_names):
            arrays = {name: tensors.placeholder_input(spec) for name, spec in signature.inputs.items()}
            try:
                servable.run(signature, arrays)
            except ServingError as error:
                logger.warning("%s version %d: placeholder warm-up of signature '%s' failed (%s); the model is "
                               "served anyway, but ship warm-up records in %s", servable.model_name,
                               servable.version, signature.name, error, "/".join(WARMUP_PATH))
        return 0
    records = [bytes(record) for record in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    if len(records) > MAX_WARMUP_RECORDS:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
    for _ in range(iterations):
        for index, record in enumerate(records):
            log = prediction_log_pb2.PredictionLog.FromString(record)
            kind = log.WhichOneof("log_type")
            if kind != "predict_log":
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"warm-up record {index} in {path} is a {kind}; this server replays predict_log")
            request = log.predict_log.request
            signature = servable.signature(request.model_spec.signature_name)
            arrays = tensors.decode_inputs(request.inputs, signature.inputs, signature.name)
            servable.run(signature, arrays)
    return len(records) * iterations


def directory_fingerprint(path: str) -> tuple[Any, ...]:
    """(relative path, size, mtime) of every file: equal on two polls means nobody is writing the version."""
    entries = []
    try:
        for root, _, files in tf.io.gfile.walk(path):
            for name in files:
                stat = tf.io.gfile.stat(posixpath.join(root, name))
                entries.append((posixpath.relpath(posixpath.join(root, name), path), stat.length, stat.mtime_nsec))
    except tf.errors.NotFoundError:  # a file vanished mid-walk: the directory is changing right now
        return (("<changing>", time.monotonic_ns()),)
    return tuple(sorted(entries))


# --- Configuration --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ServableVersionPolicy: `latest` N (default 1), `all`, or `specific` versions."""

    kind: str = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def aspired(self, eligible: Sequence[int]) -> set[int]:
        if self.kind == "all":
            return set(eligible)
        if self.kind == "specific":
            return set(eligible) & set(self.versions)
        return set(sorted(eligible, reverse=True)[:self.num_versions])

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        return "all" if self.kind == "all" else f"specific {sorted(self.versions)}"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    tags: tuple[str, ...] = ("serve",)
    warmup: bool = True
    warmup_iterations: int = 1
    max_load_retries: int = 0
    load_retry_interval_s: float = 60.0
    poll_wait_s: float = 1.0


@dataclasses.dataclass
class VersionRecord:
    version: int
    path: str
    state: int = START
    error: Optional[ServingError] = None  # set when a load or warm-up failed (state END)
    fingerprint: Optional[tuple[Any, ...]] = None
    servable: Optional[Servable] = None
    waiting_logged: bool = False

    @property
    def failed(self) -> bool:
        return self.state == END and self.error is not None


# --- One model: its versions over time ------------------------------------------------------------------

class ModelManager:
    """Polls one model's base path and keeps the versions its policy aspires to loaded (see module doc)."""

    def __init__(self, config: ModelConfig, options: LoadOptions, on_change: Callable[[], None]) -> None:
        self.config = config
        self.options = options
        self._on_change = on_change
        self._lock = threading.Lock()
        self._records: dict[int, VersionRecord] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._missing_base_logged = False
        self._kept_logged: list[int] = []

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, unload: bool = True, timeout_s: float = 30.0) -> None:
        """Stops polling (a load in progress finishes first), then unloads what is loaded."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("%s: the poller is still busy after %.0f s (a load in progress)", self.name, timeout_s)
        if unload:
            with self._lock:
                loaded = [record for record in self._records.values() if record.state == AVAILABLE]
                for record in loaded:
                    record.state = UNLOADING
            for record in loaded:
                self._unload(record)

    def _poll_loop(self) -> None:
        initial = True
        while not self._stop.is_set():
            try:
                self.poll_once(initial)
            except Exception:  # noqa: BLE001 - logged with its traceback; the next poll retries
                logger.exception("%s: polling %s failed; retrying in %.1f s", self.name, self.config.base_path,
                                 self.options.poll_wait_s)
            initial = False
            if self.options.poll_wait_s <= 0 or self._stop.wait(self.options.poll_wait_s):
                return

    # -- one poll --

    def _scan(self) -> Optional[dict[int, str]]:
        base = self.config.base_path
        if not tf.io.gfile.isdir(base):
            if not self._missing_base_logged:
                logger.warning("%s: base path %s does not exist (yet); waiting for it", self.name, base)
                self._missing_base_logged = True
            return None
        self._missing_base_logged = False
        versions: dict[int, str] = {}
        for entry in tf.io.gfile.listdir(base):
            name = entry.rstrip("/")
            path = posixpath.join(base, name)
            if name.isdigit() and int(name) <= MAX_VERSION and tf.io.gfile.isdir(path):
                versions.setdefault(int(name), path)
        return versions

    def _aspired(self, disk: Mapping[int, str]) -> set[int]:
        with self._lock:
            eligible = [version for version in disk
                        if version not in self._records or not self._records[version].failed]
        return self.config.policy.aspired(eligible)

    def poll_once(self, initial: bool = False) -> None:
        disk = self._scan()
        if disk is None:
            return
        self._retry_changed_failures(disk)
        aspired = self._aspired(disk)
        self._track(disk, aspired)
        for version in sorted(aspired, reverse=True):
            if self._stop.is_set():
                return
            self._maybe_load(version, initial)
        self._unload_replaced(disk, self._aspired(disk))

    def _retry_changed_failures(self, disk: Mapping[int, str]) -> None:
        with self._lock:
            failed = [record for record in self._records.values() if record.failed and record.version in disk]
        for record in failed:
            if directory_fingerprint(record.path) != record.fingerprint:
                logger.info("%s version %d: files changed since its failed load; will try again", self.name,
                            record.version)
                self._set(record, START, error=None, fingerprint=None)

    def _track(self, disk: Mapping[int, str], aspired: set[int]) -> None:
        """New aspired versions start in START; versions no longer wanted and not loaded go to END."""
        changed = False
        with self._lock:
            for version in aspired:
                record = self._records.get(version)
                if record is None:
                    self._records[version] = VersionRecord(version, disk[version])
                    logger.info("%s version %d: found at %s (START)", self.name, version, disk[version])
                    changed = True
                elif record.state == END and not record.failed:
                    # Its fingerprint is kept: files unchanged since it last loaded fine load at the next poll
                    # without waiting another interval (a rollback to it is that fast).
                    if record.path != disk[version]:
                        record.fingerprint = None
                    record.state, record.path = START, disk[version]
                    record.waiting_logged = False
                    logger.info("%s version %d: aspired again (START)", self.name, version)
                    changed = True
            for record in self._records.values():
                if record.state == START and record.version not in aspired:
                    record.state = END
                    why = "removed from disk" if record.version not in disk else "no longer aspired"
                    logger.info("%s version %d: %s before it loaded (END)", self.name, record.version, why)
                    changed = True
        if changed:
            self._on_change()

    def _set(self, record: VersionRecord, state: int, **fields: Any) -> None:
        with self._lock:
            record.state = state
            for key, value in fields.items():
                setattr(record, key, value)
        self._on_change()

    def _maybe_load(self, version: int, initial: bool) -> None:
        with self._lock:
            record = self._records[version]
            if record.state != START:
                return
        if not any(tf.io.gfile.exists(posixpath.join(record.path, name)) for name in SAVED_MODEL_FILES):
            if not record.waiting_logged:
                logger.info("%s version %d: no saved_model.pb in %s yet; waiting for it to be written", self.name,
                            version, record.path)
                record.waiting_logged = True
            return
        fingerprint = directory_fingerprint(record.path)
        if not initial and fingerprint != record.fingerprint:
            record.fingerprint = fingerprint  # load once the files are unchanged for one poll interval
            return
        self._load(record, fingerprint)

    def _load(self, record: VersionRecord, fingerprint: tuple[Any, ...]) -> None:
        self._set(record, LOADING)
        logger.info("%s version %d: LOADING from %s", self.name, record.version, record.path)
        started = time.monotonic()
        error: Optional[ServingError] = None
        for attempt in range(1 + self.options.max_load_retries):
            if attempt:
                logger.info("%s version %d: retrying the load (%d of %d) in %.1f s", self.name, record.version,
                            attempt, self.options.max_load_retries, self.options.load_retry_interval_s)
                if self._stop.wait(self.options.load_retry_interval_s):
                    break
            try:
                servable = load_servable(self.name, record.version, record.path, self.options.tags)
                count = warm_up(servable, self.options.warmup_iterations) if self.options.warmup else 0
            except Exception as failure:  # recorded as the version's status and logged with its traceback
                error = as_serving_error(failure, f"Loading servable {self.name} version {record.version} failed")
                logger.error("%s version %d: load failed: %s", self.name, record.version, error,
                             exc_info=not isinstance(failure, ServingError))
                error = ServingError(error.code, without_path(error.message, self.config.base_path))
                continue
            self._set(record, AVAILABLE, servable=servable, error=None, fingerprint=fingerprint)
            logger.info("%s version %d: AVAILABLE (loaded in %.1f s, %d warm-up requests replayed; signatures %s)",
                        self.name, record.version, time.monotonic() - started, count,
                        ", ".join(servable.signature_names))
            return
        after = directory_fingerprint(record.path)
        if after != fingerprint:
            logger.info("%s version %d: its files changed while loading; treating it as still being written",
                        self.name, record.version)
            self._set(record, START, fingerprint=after, error=None)
            return
        self._set(record, END, error=error, fingerprint=after)
        logger.error("%s version %d: END with error (%s); it will not replace a loaded version", self.name,
                     record.version, error)

    def _unload_replaced(self, disk: Mapping[int, str], aspired: set[int]) -> None:
        """Unloads versions no longer aspired, availability first (TF Serving's AvailabilityPreservingPolicy):
        only once every version that replaces them is AVAILABLE.

        That holds for a version whose folder left the disk too (a rollback: the newest version moved away, an
        older one still there): it keeps serving from memory until the older one is loaded and warmed up, or
        for as long as the version the policy now wants fails to load. Only when the policy wants nothing on
        disk at all (every version removed) is it unloaded at once."""
        with self._lock:
            def ready(version: int) -> bool:
                return version in self._records and self._records[version].state == AVAILABLE

            available = [record for record in self._records.values() if record.state == AVAILABLE]
            replaced = bool(aspired) and all(ready(version) for version in aspired)
            wanted = self.config.policy.aspired(list(disk))  # failed versions included: they replace nothing
            gone_replaced = all(ready(version) for version in wanted)
            leaving = [record for record in available
                       if (record.version not in disk and gone_replaced)
                       or (replaced and record.version not in aspired and record.version in disk)]
            kept = [record.version for record in available if record.version not in disk and not gone_replaced]
            if kept and kept != self._kept_logged:
                logger.info("%s: version(s) %s left the disk; still serving them until version(s) %s are "
                            "AVAILABLE", self.name, kept, sorted(version for version in wanted if not ready(version)))
            self._kept_logged = kept
            for record in leaving:
                record.state = UNLOADING  # no new request can reach it from here on
        for record in leaving:
            self._on_change()
            self._unload(record)

    def _unload(self, record: VersionRecord) -> None:
        servable = record.servable
        logger.info("%s version %d: UNLOADING", self.name, record.version)
        if servable is not None:
            servable.drain()
            servable.release()
        self._set(record, END, servable=None)
        gc.collect()  # frees the version's TF resources now rather than at some later collection
        logger.info("%s version %d: unloaded (END)", self.name, record.version)

    # -- requests and status --

    def label_version(self, label: str) -> int:
        version = self.config.labels.get(label)
        if version is None:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
        return version

    @contextlib.contextmanager
    def serve(self, version: Optional[int]) -> Iterator[Servable]:
        """The servable for a request (newest AVAILABLE when `version` is None), held until the request ends."""
        with self._lock:
            if version is None:
                available = [record for record in self._records.values() if record.state == AVAILABLE]
                if not available:
                    states = ", ".join(f"{r.version} {STATE_NAMES[r.state]}" for r in self._records.values())
                    raise ServingError(grpc.StatusCode.UNAVAILABLE,  # no filesystem path: clients see this
                                       f"Servable not found for request: Latest({self.name}): no version is "
                                       f"available yet ({states or 'no versions found'})")
                record = max(available, key=lambda r: r.version)
            else:
                record = self._records.get(version)
                if record is None or record.state != AVAILABLE:
                    if record is not None and record.state in (START, LOADING):
                        raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                           f"Servable not found for request: Specific({self.name}, {version}): "
                                           f"version {version} is {STATE_NAMES[record.state]}")
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: Specific({self.name}, {version})")
            servable = record.servable
            assert servable is not None, f"AVAILABLE version {record.version} without a servable"
            servable.enter()
        try:
            yield servable
        finally:
            servable.exit()

    def has_available(self) -> bool:
        with self._lock:
            return any(record.state == AVAILABLE for record in self._records.values())

    def status(self, version: Optional[int]) -> list[get_model_status_pb2.ModelVersionStatus]:
        """TF Serving's GetModelStatus for this model, newest version first."""
        with self._lock:
            if version is not None:
                if version not in self._records:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model "
                                                                  f"{self.name}")
                records = [self._records[version]]
            else:
                records = sorted(self._records.values(), key=lambda r: r.version, reverse=True)
                if not records:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {self.name}")
            statuses = []
            for record in records:
                status = get_model_status_pb2.ModelVersionStatus(version=record.version, state=record.state)
                status.status.SetInParent()  # TF Serving always sends it, OK included
                status.status.error_code = record.error.code.value[0] if record.error else 0
                status.status.error_message = record.error.message if record.error else ""
                statuses.append(status)
        return statuses


# --- All models -----------------------------------------------------------------------------------------

class ModelRegistry:
    """The served models by name; resolves a request's ModelSpec to a held servable."""

    def __init__(self, options: LoadOptions, on_change: Callable[[], None] = lambda: None) -> None:
        self.options = options
        self._on_change = on_change
        self._lock = threading.Lock()
        self._managers: dict[str, ModelManager] = {}

    def apply(self, configs: Sequence[ModelConfig]) -> None:
        """Serves exactly `configs`: starts new models, updates policies and labels, stops removed ones.

        A model whose base path changed is restarted from the new path.
        """
        wanted = {config.name: config for config in configs}
        if len(wanted) != len(configs):
            raise ValueError(f"model names must be unique: {[config.name for config in configs]}")
        stopping: list[ModelManager] = []
        starting: list[ModelManager] = []
        with self._lock:
            for name, manager in list(self._managers.items()):
                config = wanted.get(name)
                if config is None or config.base_path != manager.config.base_path:
                    stopping.append(self._managers.pop(name))
                elif config != manager.config:
                    manager.config = config
                    logger.info("%s: now policy %s, labels %s", name, config.policy.describe(), dict(config.labels))
            for name, config in wanted.items():
                if name not in self._managers:
                    manager = ModelManager(config, self.options, self._on_change)
                    self._managers[name] = manager
                    starting.append(manager)
        for manager in stopping:
            logger.info("%s: no longer configured; unloading", manager.name)
            manager.stop(unload=True)
        for manager in starting:
            logger.info("%s: serving from %s (policy %s)", manager.name, manager.config.base_path,
                        manager.config.policy.describe())
            manager.start()
        self._on_change()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._managers)

    def manager(self, spec: model_pb2.ModelSpec) -> ModelManager:
        with self._lock:
            manager = self._managers.get(spec.name)
        if manager is None:
            kind = spec.WhichOneof("version_choice")
            request = (f"Specific({spec.name}, {spec.version.value})" if kind == "version"
                       else f"Latest({spec.name})")
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")
        return manager

    @contextlib.contextmanager
    def serve(self, spec: model_pb2.ModelSpec) -> Iterator[Servable]:
        manager = self.manager(spec)
        kind = spec.WhichOneof("version_choice")
        version = (spec.version.value if kind == "version"
                   else manager.label_version(spec.version_label) if kind == "version_label" else None)
        with manager.serve(version) as servable:
            yield servable

    def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        with self._lock:
            manager = self._managers.get(spec.name)
        if manager is None:
            kind = spec.WhichOneof("version_choice")
            if kind == "version":
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {spec.version.value} of model {spec.name}")
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        kind = spec.WhichOneof("version_choice")
        version = (spec.version.value if kind == "version"
                   else manager.label_version(spec.version_label) if kind == "version_label" else None)
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=manager.status(version))

    def availability(self) -> dict[str, bool]:
        with self._lock:
            managers = list(self._managers.values())
        return {manager.name: manager.has_available() for manager in managers}

    def stop(self) -> None:
        with self._lock:
            managers = list(self._managers.values())
        for manager in managers:
            manager.stop(unload=True)
