"""TF Serving's REST API (`--rest_api_port`) on Werkzeug's threaded server.

Routes, JSON formats, error bodies and HTTP codes follow TF Serving (http_rest_api_handler.cc, json_tensor.h):
- `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict` with `{"signature_name": ..., "instances": [...]}`
  (row format, answered `{"predictions": [...]}`) or `{"inputs": ...}` (columnar, answered `{"outputs": ...}`);
  strings are UTF-8, binary values `{"b64": "..."}`; string outputs whose name ends in `_bytes` (or that are
  not valid UTF-8) come back as `{"b64": ...}`.
- `GET /v1/models/<name>[/versions/<v>|/labels/<l>]`: GetModelStatus as JSON.
- `GET /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata`: GetModelMetadata as JSON.
Errors are `{"error": "<message>"}` with TF Serving's mapping of status codes to HTTP (INVALID_ARGUMENT and
FAILED_PRECONDITION 400, NOT_FOUND 404, UNAVAILABLE 503, INTERNAL 500, ...). The request path is the gRPC one
(`Predictor`), so both APIs give the same answers.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import threading
import time
from typing import Any, Iterable, Optional

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from serving import ServingError, tensors
from serving.model_manager import ModelRegistry
from serving.prediction_service import SIGNATURE_DEF_FIELD, Predictor

logger = logging.getLogger("serving")

_VERSION = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)" + _VERSION + r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?" + _VERSION + r"(?:/(metadata))?", re.IGNORECASE)

HTTP_STATUS = {  # TF Serving's ToHTTPStatusCode (http_server.cc)
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}
_JSON_OPTIONS = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# --- JSON -> tensors ------------------------------------------------------------------------------------

def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _json_shape(name: str, value: Any, depth: int = 0) -> tuple[int, ...]:
    if isinstance(value, list):
        if depth >= tensors.MAX_RANK:
            raise _invalid(f"input '{name}': lists nested more than {tensors.MAX_RANK} deep (the largest rank "
                           "this server accepts)")
        if not value:
            return (0,)
        shapes = {_json_shape(name, item, depth + 1) for item in value}
        if len(shapes) > 1:
            raise _invalid(f"input '{name}': nested lists of different lengths (a ragged tensor) cannot be a "
                           f"dense tensor; shapes seen {sorted(shapes)}")
        return (len(value), *shapes.pop())
    if isinstance(value, dict) and not _is_b64(value):
        raise _invalid(f"input '{name}': unexpected JSON object {_snippet(value)} (only {{\"b64\": ...}})")
    return ()


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _leaf(name: str, value: Any, dtype: tf.DType) -> Any:
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, TypeError) as error:
                raise _invalid(f"input '{name}': invalid base64 in {{\"b64\": ...}}: {error}") from error
    elif dtype == tf.bool:
        if isinstance(value, bool):
            return value
    elif dtype.is_integer:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif dtype.is_floating:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    else:
        raise _invalid(f"input '{name}': {tensors.dtype_name(dtype.as_datatype_enum)} is not supported in JSON")
    raise _invalid(f"input '{name}' expects {tensors.dtype_name(dtype.as_datatype_enum)} values but got "
                   f"{_snippet(value)}")


def json_to_array(name: str, value: Any, dtype: tf.DType, max_elements: int = tensors.DEFAULT_MAX_ELEMENTS
                  ) -> np.ndarray:
    """A JSON value (nested lists of numbers, strings or {"b64": ...}) as a dense array of `dtype`; at most
    `max_elements` values (INVALID_ARGUMENT naming the input, before the array is built)."""
    shape = _json_shape(name, value)
    tensors.declared_elements(name, shape, max_elements)
    leaves = [_leaf(name, leaf, dtype) for leaf in _leaves(value)]
    if dtype == tf.string:
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    try:
        return np.array(leaves, dtype=dtype.as_numpy_dtype).reshape(shape)
    except OverflowError as error:
        raise _invalid(f"input '{name}': value out of range for {dtype.name}: {error}") from error


def _instances(instances: Any, specs: dict[str, tf.TensorSpec],
               max_elements: int = tensors.DEFAULT_MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """Row format: one JSON value (or object of named values) per example, stacked into a batch."""
    if not isinstance(instances, list):
        raise _invalid("Excepting 'instances' to be an list/array")
    if not instances:
        raise _invalid("No values in 'instances' array")
    as_objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not as_objects and len(specs) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                       f"required as per tensorinfo_map ({', '.join(sorted(specs))})")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in specs}
    remaining = max_elements
    for index, instance in enumerate(instances):
        if as_objects != (isinstance(instance, dict) and not _is_b64(instance)):
            raise _invalid(f"item {index} of 'instances' mixes objects and plain values")
        named = instance if as_objects else {next(iter(specs)): instance}
        if set(named) != set(specs):
            raise _invalid(f"Failed to process element: {index} of 'instances' list. JSON object keys "
                           f"{sorted(named)} must be equal to: {','.join(sorted(specs))}")
        for name, value in named.items():
            array = json_to_array(name, value, specs[name].dtype, remaining)
            remaining -= array.size
            if columns[name] and columns[name][0].shape != array.shape:
                raise _invalid(f"Failed to process element: {index} key: {name} of 'instances' list. Error: "
                               f"Expecting shape {list(columns[name][0].shape)} but got: {list(array.shape)}")
            columns[name].append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _inputs(inputs: Any, specs: dict[str, tf.TensorSpec],
            max_elements: int = tensors.DEFAULT_MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """Columnar format: one full tensor per input (or the only input's tensor itself)."""
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(specs) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                           f"required as per tensorinfo_map ({', '.join(sorted(specs))})")
        name = next(iter(specs))
        return {name: json_to_array(name, inputs, specs[name].dtype, max_elements)}
    arrays = {}
    remaining = max_elements
    for name, spec in specs.items():  # like TF Serving, keys the signature lacks are ignored here
        if name not in inputs:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(name, inputs[name], spec.dtype, remaining)
        remaining -= arrays[name].size
    return arrays


# --- tensors -> JSON ------------------------------------------------------------------------------------

def _string_leaf(alias: str, value: bytes) -> Any:
    if not alias.endswith("_bytes"):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass  # not text: sent as base64 below, like a *_bytes output
    return {"b64": base64.b64encode(value).decode("ascii")}


def array_to_json(alias: str, array: np.ndarray) -> Any:
    """Nested lists; float32 printed at its own precision (0.1, not 0.10000000149011612)."""
    if array.dtype == object or array.dtype.kind == "S":
        flat = [_string_leaf(alias, bytes(value)) for value in array.ravel()]
    elif array.dtype == np.float32 or array.dtype == np.float16:
        flat = [float(text) for text in array.ravel().astype(str)]
    else:
        return array.tolist()
    if array.ndim == 0:
        return flat[0]
    holder = np.empty(len(flat), dtype=object)
    holder[:] = flat
    return holder.reshape(array.shape).tolist()


def _predictions(outputs: dict[str, np.ndarray]) -> list[Any]:
    """Row format: one entry per example; all outputs must share the batch size (json_tensor.cc)."""
    sizes = {}
    for alias, array in outputs.items():
        if array.ndim == 0:
            raise _invalid(f"Tensor name: {alias} has no shape information ")
        sizes[alias] = array.shape[0]
    batch = next(iter(sizes.values()))
    for alias, size in sizes.items():
        if size != batch:
            raise _invalid(f"Tensor name: {alias} has inconsistent batch size: {size} expecting: {batch}")
    columns = {alias: array_to_json(alias, array) for alias, array in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return [{alias: column[row] for alias, column in columns.items()} for row in range(batch)]


# --- the WSGI app ---------------------------------------------------------------------------------------

DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_MAX_BODY_BYTES = 8 << 20  # 8 MiB


class _BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _shut_reads(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


class RestApi:
    """The WSGI application; at most `num_threads` requests are worked on at once.

    A request's body is read in full *before* it takes one of those slots, within `body_timeout_s` in all and
    at most `max_body_bytes` long (else 408 / 413), so clients that send a body slowly, or never finish it,
    hold only their own connection's thread, never a slot other requests wait for."""

    def __init__(self, predictor: Predictor, registry: ModelRegistry, num_threads: int,
                 body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.predictor = predictor
        self.registry = registry
        self.body_timeout_s = body_timeout_s
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(num_threads)
        self._active = 0
        self._idle = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            body = self.read_body(environ, request.content_length)
        except _BodyRefused as refused:
            response = Response(json.dumps({"error": refused.message}), status=refused.status,
                                content_type="application/json")
            return response(environ, start_response)
        with self._idle:
            self._active += 1
        try:
            with self._slots:
                response = self.handle(request, body)
            return response(environ, start_response)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def read_body(self, environ: dict[str, Any], length: Optional[int]) -> bytes:
        """The whole body within the deadline: each socket read waits at most what is left of it."""
        chunked = bool(environ.get("wsgi.input_terminated"))
        if length is None and not chunked:
            return b""
        if length is not None and length > self.max_body_bytes:
            raise _BodyRefused(413, f"Request body of {length} bytes is larger than the {self.max_body_bytes} "
                                    "bytes this server accepts (--rest_max_body_bytes)")
        stream = environ["wsgi.input"]
        read = getattr(stream, "read1", None) if not chunked else None
        read = read or stream.read
        sock = environ.get("werkzeug.socket")
        deadline = time.monotonic() + self.body_timeout_s
        parts: list[bytes] = []
        received = 0
        timed_out = _BodyRefused(408, f"Request body not received within {self.body_timeout_s:g} s "
                                      "(--rest_body_timeout_s)")
        # A chunked body is read through buffered reads that may wait on the socket several times; at the
        # deadline its read side is shut, so a client trickling bytes cannot stretch it.
        cutoff = (threading.Timer(self.body_timeout_s, _shut_reads, (sock,))
                  if chunked and sock is not None else None)
        if cutoff is not None:
            cutoff.daemon = True
            cutoff.start()
        try:
            while length is None or received < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise timed_out
                if sock is not None:
                    sock.settimeout(left)
                chunk = read(65536 if length is None else min(65536, length - received))
                if not chunk:
                    if length is not None:
                        raise _BodyRefused(400, f"Request body ended after {received} of {length} bytes")
                    break
                parts.append(chunk)
                received += len(chunk)
                if received > self.max_body_bytes:
                    raise _BodyRefused(413, f"Request body is larger than the {self.max_body_bytes} bytes this "
                                            "server accepts (--rest_max_body_bytes)")
        except TimeoutError as error:
            raise timed_out from error
        except OSError as error:  # a malformed chunked encoding, a reset connection, the cut-off below
            if time.monotonic() >= deadline:
                raise timed_out from error
            raise _BodyRefused(400, f"Cannot read the request body: {error}") from error
        finally:
            if cutoff is not None:
                cutoff.cancel()
            if sock is not None:
                try:
                    sock.settimeout(self.body_timeout_s)
                except OSError:
                    pass
        if time.monotonic() > deadline:  # the cut-off ended a chunked body early
            raise timed_out
        return b"".join(parts)

    def drain(self, timeout_s: float) -> bool:
        """Waits for the requests being answered; False if some are still running after the timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout_s)

    def handle(self, request: Request, body: bytes) -> Response:
        path, method = request.path, request.method
        if not path.lower().startswith("/v1/"):
            return Response(json.dumps({"error": f"Not found: {method} {path}"}), status=404,
                            content_type="application/json")
        try:
            body = self._dispatch(method, path, body)
            return Response(body, status=200, content_type="application/json")
        except ServingError as error:
            return Response(json.dumps({"error": error.message}), status=HTTP_STATUS.get(error.code, 500),
                            content_type="application/json")
        except Exception as error:  # answered 500 with the message; the server keeps serving
            logger.exception("REST %s %s failed", method, path)
            return Response(json.dumps({"error": f"{type(error).__name__}: {error}"}), status=500,
                            content_type="application/json")

    def _dispatch(self, method: str, path: str, body: bytes) -> str:
        malformed = _invalid(f"Malformed request: {method} {path}")
        if method == "POST":
            match = PREDICT_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, verb = match.groups()
            if verb.lower() != "predict":
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"{verb} is not supported by this server; use :predict")
            return self.predict(_model_spec(name, version, label), body)
        if method == "GET":
            match = STATUS_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, metadata = match.groups()
            if not name:
                raise _invalid("Missing model name in request.")
            spec = _model_spec(name, version, label)
            return self.metadata(spec) if metadata else self.status(spec)
        raise malformed

    def predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        document = _parse_json(body)
        signature_name = document.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise _invalid("'signature_name' key must be a string value.")
        spec.signature_name = signature_name
        if "instances" in document and "inputs" in document:
            raise _invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
        if "instances" not in document and "inputs" not in document:
            raise _invalid("Missing 'inputs' or 'instances' key")
        row_format = "instances" in document
        with self.registry.serve(spec) as servable:
            signature = servable.signature(signature_name)
            specs = dict(signature.inputs)
            if not specs:
                raise _invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
            limit = self.predictor.max_elements
            arrays = (_instances(document["instances"], specs, limit) if row_format
                      else _inputs(document["inputs"], specs, limit))
            request = predict_pb2.PredictRequest(model_spec=spec)
            for name, array in arrays.items():
                request.inputs[name].CopyFrom(tensors.ndarray_to_proto(array, specs[name].dtype))
            response = self.predictor.predict_on(servable, request)
        outputs = {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}
        if row_format:
            return json.dumps({"predictions": _predictions(outputs)})
        columns = {alias: array_to_json(alias, array) for alias, array in outputs.items()}
        return json.dumps({"outputs": next(iter(columns.values())) if len(columns) == 1 else columns})

    def status(self, spec: model_pb2.ModelSpec) -> str:
        return json.dumps(json_format.MessageToDict(self.registry.status(spec), **_JSON_OPTIONS), indent=1)

    def metadata(self, spec: model_pb2.ModelSpec) -> str:
        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec,
                                                                 metadata_field=[SIGNATURE_DEF_FIELD])
        response = self.predictor.metadata(request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
        return json.dumps({"model_spec": json_format.MessageToDict(response.model_spec, **_JSON_OPTIONS),
                           "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_defs,
                                                                                      **_JSON_OPTIONS)}}, indent=1)


def _model_spec(name: str, version: Optional[str], label: Optional[str]) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        if len(version.lstrip("0")) > 19 or int(version) > 2 ** 63 - 1:  # int64, as TF Serving's SimpleAtoi
            raise _invalid(f"Failed to convert version: {version[:40]} to numeric.")
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label
    return spec


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise _invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except RecursionError as error:  # nested thousands deep
        raise _invalid("JSON Parse error: The document is nested too deeply") from error
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise _invalid(f"JSON Parse error: {error}") from error
    if not isinstance(document, dict):
        raise _invalid("JSON Value: " + _snippet(document) + " Is not object")
    return document


def _snippet(value: Any) -> str:
    """The start of a JSON value for an error message, even when it is nested too deeply to print."""
    try:
        return json.dumps(value)[:80]
    except (RecursionError, ValueError):
        return "<a value nested too deeply to print>"


class _ConnectionCappedServer(ThreadedWSGIServer):
    """Werkzeug's thread-per-connection server with at most `max_connections` connections open at once.

    A connection over the cap is answered 503 at once (plain HTTP; a TLS connection is closed, since no
    handshake has happened yet) and closed, so many idle or slow connections cannot make the server start
    threads without bound."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.refused = 0
        self._open = 0
        self._count = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count:
            over = self._open >= self.max_connections
            if over:
                self.refused += 1
            else:
                self._open += 1
        if not over:
            super().process_request(request, client_address)
            return
        if self.refused == 1 or self.refused % 1000 == 0:
            logger.warning("REST: %d connection(s) refused so far: %d open, the most --rest_max_connections "
                           "allows", self.refused, self.max_connections)
        if self.ssl_context is None:
            body = json.dumps({"error": f"Too many open connections (at most {self.max_connections}, "
                                        "--rest_max_connections)"}).encode()
            try:
                request.setblocking(False)  # a few hundred bytes into an empty send buffer; never wait
                request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                             + body)
            except OSError:
                pass  # the client went away or cannot take the answer: it is closed below either way
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """`socketserver.ThreadingMixIn`'s body, except that the slot is freed *before* the socket is closed: a
        client that has seen its connection end can open the next one and find the slot free."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)  # socketserver's own report: traceback to stderr
        finally:
            with self._count:
                self._open -= 1
            self.shutdown_request(request)

    @property
    def open_connections(self) -> int:
        with self._count:
            return self._open


class RestServer:
    """Werkzeug's threaded WSGI server for `RestApi`, run in a background thread.

    Every connection's socket reads time out after the app's `body_timeout_s`: a connection that sends no
    request line or headers is closed then, and Werkzeug closes every connection after its response (no
    keep-alive to idle on). At most `max_connections` connections are open at once (more get 503 and are closed)."""

    def __init__(self, app: RestApi, host: str, port: int, max_connections: int, ssl_context: Any = None) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access-log line per request
        self.app = app
        handler = type("RestRequestHandler", (WSGIRequestHandler,), {"timeout": app.body_timeout_s})
        self._server = _ConnectionCappedServer(host, port, app, handler, False, ssl_context,
                                               max_connections=max_connections)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace_s: float) -> None:
        """Stops accepting, then waits up to `grace_s` for the requests being answered."""
        self._server.shutdown()
        self._server.server_close()
        if not self.app.drain(grace_s):
            logger.warning("REST: requests still running after %.0f s of grace", grace_s)
