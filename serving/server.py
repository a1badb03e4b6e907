"""A stand-in for `tensorflow_model_server`: TF Serving's gRPC and REST APIs over TF Serving's model layout.

    python -m serving.server --port 8500 --rest_api_port 8501 \\
        --model_name music_retrieval --model_base_path /models/music_retrieval

Serves `<model_base_path>/<version>/` SavedModels (newest version by default), polling for new versions and
swapping them in with no failed request; or several models from `--model_config_file` (TF Serving's text
ModelServerConfig). Flags are named as `tensorflow_model_server` names them; the few it lacks are marked
"(this server)". In production, where the real binary can be installed, it serves the same directories and
the same clients (docs/design.md §7-8).
"""
from __future__ import annotations

import argparse
import os
import posixpath
import re
import signal
import sys
import threading
from typing import Any, Optional, Sequence

EPILOG = """\
APIs:
  gRPC  tensorflow.serving.PredictionService: Predict, GetModelMetadata (signature_def)
        tensorflow.serving.ModelService: GetModelStatus, HandleReloadConfigRequest
        grpc.health.v1.Health: each model's name is SERVING once it has an AVAILABLE version;
        "" and "tensorflow.serving.PredictionService" once every model has
  REST  POST /v1/models/NAME[/versions/V|/labels/L]:predict   ("instances" or "inputs" JSON)
        GET  /v1/models/NAME[/versions/V|/labels/L]           (status)
        GET  /v1/models/NAME[/versions/V|/labels/L]/metadata
Versions: a new version is loaded and warmed up before it takes traffic, the one it replaces is unloaded after
its in-flight requests; a version that fails to load stays END with its error in GetModelStatus and never
replaces a loaded one; a version folder without saved_model.pb, or whose files are still changing, is waited for.
Signals: SIGTERM or SIGINT stops accepting requests, lets in-flight ones finish (--grace_period_seconds), exits 0.
Security: loopback only unless --host says otherwise; TLS and client certificates with --ssl_config_file; reloads
only from --allowed_model_roots. See docs/serving.md.
"""


def parse_bool(text: str) -> bool:
    """absl-style booleans: --flag, --flag=true, --flag=false."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "t", "yes", "y"):
        return True
    if lowered in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def rest_port(text: str) -> int:
    if text == "auto":
        return -1
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


DEFAULT_REST_MAX_CONNECTIONS = 512
"""REST connections open at once: each holds a thread, for at most --rest_body_timeout_s while it idles."""


def non_negative(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def bool_flag(group: Any, name: str, default: bool, text: str) -> None:
        group.add_argument(name, nargs="?", const=True, default=default, type=parse_bool, metavar="true|false",
                           help=f"{text} (default {str(default).lower()})")

    net = parser.add_argument_group("network")
    net.add_argument("--port", type=non_negative(int), default=8500,
                     help="gRPC port (default 8500); 0 picks a free port, printed as 'serving: gRPC on HOST:PORT'")
    net.add_argument("--rest_api_port", type=rest_port, default=0, metavar="PORT|auto",
                     help="REST port; 0 (the default) disables REST, as in TF Serving; 'auto' picks a free port "
                          "(this server), printed as 'serving: REST on HOST:PORT'")
    net.add_argument("--host", default="127.0.0.1",
                     help="(this server) address to bind both APIs to (default 127.0.0.1, loopback only; TF Serving "
                          "binds 0.0.0.0, every interface: give --host 0.0.0.0 to be reachable from other hosts, "
                          "e.g. in a container, and see docs/serving.md on what that exposes)")
    net.add_argument("--num_threads", type=int, default=16,
                     help="(this server) gRPC worker threads, i.e. requests worked on at once (default 16)")
    net.add_argument("--rest_api_num_threads", type=int, default=4 * (os.cpu_count() or 1),
                     help="REST requests worked on at once (default 4 x CPUs, as in TF Serving)")
    net.add_argument("--rest_body_timeout_s", type=float, default=10.0,
                     help="(this server) a REST request's body must arrive within this many seconds, read before "
                          "the request takes a worker (else 408); also how long a connection may idle (default 10)")
    net.add_argument("--rest_max_body_bytes", type=int, default=8 << 20,
                     help="(this server) largest REST request body accepted, else 413 (default 8388608, 8 MiB)")
    net.add_argument("--rest_max_connections", type=int, default=DEFAULT_REST_MAX_CONNECTIONS,
                     help="(this server) REST connections open at once (one thread each); more are answered 503 "
                          f"and closed (default {DEFAULT_REST_MAX_CONNECTIONS})")
    net.add_argument("--ssl_config_file", default="",
                     help="text-format SSLConfig as in TF Serving (server_key, server_cert: PEM text; custom_ca: PEM "
                          "CA certificates that sign client certificates; client_verify: true to refuse clients "
                          "without one): both APIs then speak TLS only (TF Serving: gRPC only)")
    net.add_argument("--grpc_channel_arguments", default="",
                     help="extra gRPC server arguments, 'key=value,key=value' (integers or strings)")
    net.add_argument("--max_request_elements", type=int, default=None,
                     help="(this server) values a request's input tensors may declare in all, checked against their "
                          "shapes before anything is allocated (default 4194304); more is INVALID_ARGUMENT")
    net.add_argument("--grace_period_seconds", type=float, default=10.0,
                     help="(this server) on SIGTERM/SIGINT, how long in-flight requests may finish (default 10)")

    models = parser.add_argument_group("models")
    models.add_argument("--model_name", default="default",
                        help="name of the model served from --model_base_path (default 'default', as in TF Serving)")
    models.add_argument("--model_base_path", default="",
                        help="folder of integer version folders, each a SavedModel: <base>/<version>/saved_model.pb")
    models.add_argument("--model_config_file", default="",
                        help="text-format ModelServerConfig (model_config_list of name, base_path, "
                             "model_platform 'tensorflow', model_version_policy latest/all/specific, "
                             "version_labels); replaces --model_name/--model_base_path")
    models.add_argument("--allowed_model_roots", "--allowed_model_base_paths", default=None, metavar="DIR,DIR",
                        help="(this server) directories ModelService.HandleReloadConfigRequest may serve models "
                             "from; a reload naming a base path outside them is refused with PERMISSION_DENIED "
                             "and changes nothing (default: the parent folders of the base paths given at start-up)")
    bool_flag(models, "--enable_model_reload", True,
              "(this server) answer ModelService.HandleReloadConfigRequest; false refuses every reload "
              "(PERMISSION_DENIED)")
    models.add_argument("--model_config_file_poll_wait_seconds", type=non_negative(float), default=0.0,
                        help="re-read --model_config_file this often and apply changes (default 0: never)")
    models.add_argument("--file_system_poll_wait_seconds", type=non_negative(float), default=1.0,
                        help="seconds between polls of the base paths for new, changed or removed versions "
                             "(default 1); 0 polls once at start-up")
    models.add_argument("--saved_model_tags", default="serve",
                        help="comma-separated MetaGraph tags to load (default 'serve')")
    bool_flag(models, "--enable_model_warmup", True,
              "replay <version>/assets.extra/tf_serving_warmup_requests before a version takes traffic")
    models.add_argument("--num_request_iterations_for_warmup", type=int, default=1,
                        help="times each warm-up record is replayed (default 1)")
    models.add_argument("--max_num_load_retries", type=non_negative(int), default=0,
                        help="retries of a failed load (default 0 here; TF Serving's 5 is meant for flaky storage, "
                             "and a version still being written is waited for instead: its files must stop "
                             "changing for one poll interval before it loads)")
    models.add_argument("--load_retry_interval_micros", type=non_negative(int), default=60_000_000,
                        help="pause between load retries (default 1 minute)")
    models.add_argument("--tensorflow_intra_op_parallelism", type=non_negative(int), default=0,
                        help="threads inside one op (default 0: TensorFlow chooses)")
    models.add_argument("--tensorflow_inter_op_parallelism", type=non_negative(int), default=0,
                        help="ops run in parallel (default 0: TensorFlow chooses)")
    bool_flag(models, "--enable_onednn", False,
              "(this server) TensorFlow's oneDNN kernels; off as in TF Serving's stock build, because their per-op "
              "set-up dominates one-row requests (serving/runtime.py)")

    batching = parser.add_argument_group("batching (TF Serving's BatchingParameters)")
    bool_flag(batching, "--enable_batching", False, "merge concurrent requests to one signature into one run")
    batching.add_argument("--batching_parameters_file", default="",
                          help="text-format BatchingParameters: max_batch_size, batch_timeout_micros, "
                               "num_batch_threads, max_enqueued_batches ({ value: N }) and "
                               "pad_variable_length_inputs: true|false; the flags below override it")
    batching.add_argument("--max_batch_size", type=int, default=None,
                          help="(this server) rows per batch at most (default 1000)")
    batching.add_argument("--batch_timeout_micros", type=non_negative(int), default=None,
                          help="(this server) how long a batch may wait to fill (default 0: only while all batch "
                               "threads are busy)")
    batching.add_argument("--num_batch_threads", type=int, default=None,
                          help="(this server) batches run at once (default: number of CPUs)")
    batching.add_argument("--max_enqueued_batches", type=int, default=None,
                          help="(this server) batches queued per signature before UNAVAILABLE (default 10)")
    batching.add_argument("--pad_variable_length_inputs", nargs="?", const=True, default=None, type=parse_bool,
                          metavar="true|false",
                          help="(this server; default true) pad inputs' unknown non-batch dimensions to the batch's "
                               "longest: strings with \"\", numbers with 0")
    return parser


# --- configuration files --------------------------------------------------------------------------------

def read_model_config(path: str) -> list[Any]:
    """ModelConfigs from a text-format ModelServerConfig file (ServingError if it cannot be used)."""
    import grpc
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from serving import ServingError

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{path} is not a text-format ModelServerConfig: {error}") from error
    return model_configs(config, path)


def model_configs(config: Any, origin: str) -> list[Any]:
    """ModelServerConfig -> ModelConfigs, refusing what this server does not do rather than ignoring it."""
    import grpc

    from serving import ServingError
    from serving.model_manager import ModelConfig, VersionPolicy

    def fail(message: str) -> ServingError:
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"{origin}: {message}")

    if config.WhichOneof("config") == "custom_model_config":
        raise fail("custom_model_config is not supported; use model_config_list")
    configs = []
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise fail(f"every model needs a name and a base_path: {model}")
        if model.model_platform not in ("", "tensorflow"):
            raise fail(f"model {model.name}: model_platform {model.model_platform!r} is not supported ('tensorflow')")
        if model.HasField("logging_config"):
            raise fail(f"model {model.name}: logging_config (request logging) is not supported")
        policy_proto = model.model_version_policy
        kind = policy_proto.WhichOneof("policy_choice") or "latest"
        if kind == "latest":
            policy = VersionPolicy("latest", max(1, policy_proto.latest.num_versions))
        elif kind == "all":
            policy = VersionPolicy("all")
        else:
            policy = VersionPolicy("specific", versions=frozenset(policy_proto.specific.versions))
        configs.append(ModelConfig(model.name, model.base_path, policy, dict(model.version_labels)))
    names = [config.name for config in configs]
    if len(set(names)) != len(names):
        raise fail(f"model names must be unique: {names}")
    if not configs:
        raise fail("no models in model_config_list")
    return configs


SSL_CONFIG_FIELDS = ("server_key", "server_cert", "custom_ca", "client_verify")


def _ssl_config_class() -> Any:
    """TF Serving's tensorflow.serving.SSLConfig (ssl_config.proto), which its pip package does not ship."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    name = "tensorflow_serving/config/ssl_config_for_python_server.proto"
    pool = descriptor_pool.DescriptorPool()
    proto = descriptor_pb2.FileDescriptorProto(name=name, package="tensorflow.serving", syntax="proto3")
    message = proto.message_type.add(name="SSLConfig")
    string, boolean = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
    for number, field in enumerate(SSL_CONFIG_FIELDS, start=1):
        message.field.add(name=field, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                          type=boolean if field == "client_verify" else string)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


def read_ssl_config(path: str) -> Any:
    """--ssl_config_file: TF Serving's text-format SSLConfig, checked (a key and a certificate; a CA to verify
    clients with when client_verify is on)."""
    from google.protobuf import text_format

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        config = text_format.Parse(text, _ssl_config_class()())
    except text_format.ParseError as error:
        raise SystemExit(f"error: --ssl_config_file {path} is not a text-format SSLConfig: {error}") from error
    if not config.server_key or not config.server_cert:
        raise SystemExit(f"error: --ssl_config_file {path}: server_key and server_cert are required")
    if config.client_verify and not config.custom_ca:
        raise SystemExit(f"error: --ssl_config_file {path}: client_verify needs custom_ca (the CA that signs the "
                         "clients' certificates)")
    return config


def rest_ssl_context(config: Any) -> Any:
    """An SSLContext for the REST server from an SSLConfig; the handshake runs in each connection's own thread
    (under the REST read timeout), never in the thread that accepts connections."""
    import ssl
    import tempfile

    class LazyHandshakeContext(ssl.SSLContext):
        def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["do_handshake_on_connect"] = False
            return super().wrap_socket(*args, **kwargs)

    context = LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads files only; private, and gone at once
        key, cert = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
        for target, text in ((key, config.server_key), (cert, config.server_cert)):
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
        context.load_cert_chain(cert, key)
    if config.custom_ca:
        context.load_verify_locations(cadata=config.custom_ca)
    context.verify_mode = ssl.CERT_REQUIRED if config.client_verify else ssl.CERT_NONE
    return context


def read_batching_parameters(path: str) -> dict[str, Any]:
    """The BatchingParameters fields this server supports, from TF Serving's text format."""
    fields = {"max_batch_size": int, "batch_timeout_micros": int, "num_batch_threads": int,
              "max_enqueued_batches": int}
    with open(path, encoding="utf-8") as handle:
        text = re.sub(r"#.*", "", handle.read())
    values: dict[str, Any] = {}
    for name, value in re.findall(r"(\w+)\s*\{\s*value\s*:\s*([^\s}]+)\s*\}", text):
        if name not in fields:
            raise SystemExit(f"error: {path}: {name} is not supported (supported: {', '.join(fields)}, "
                             "pad_variable_length_inputs)")
        values[name] = fields[name](value)
    rest = re.sub(r"(\w+)\s*\{\s*value\s*:\s*([^\s}]+)\s*\}", "", text)
    for name, value in re.findall(r"(\w+)\s*:\s*(\S+)", rest):
        if name != "pad_variable_length_inputs":
            raise SystemExit(f"error: {path}: {name} is not supported")
        values[name] = parse_bool(value)
    leftover = re.sub(r"(\w+)\s*:\s*(\S+)", "", rest).strip()
    if leftover:
        raise SystemExit(f"error: {path}: cannot read {leftover[:60]!r}")
    return values


def grpc_options(text: str) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --grpc_channel_arguments: expected key=value, got {item!r}")
        options.append((key, int(value) if value.lstrip("-").isdigit() else value))
    return options


# --- wiring ---------------------------------------------------------------------------------------------

class Server:
    """Both APIs, the models, health, batching; `stop` shuts them down in order."""

    def __init__(self, args: argparse.Namespace) -> None:
        import grpc
        from concurrent import futures
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from serving import batching, model_manager, prediction_service, rest, tensors

        self.args = args
        self.log = model_manager.logger
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._health_pb2 = health_pb2
        self._health_lock = threading.Lock()
        self._health_names: set[str] = set()
        options = model_manager.LoadOptions(
            tags=tuple(tag.strip() for tag in args.saved_model_tags.split(",") if tag.strip()),
            warmup=args.enable_model_warmup, warmup_iterations=args.num_request_iterations_for_warmup,
            max_load_retries=args.max_num_load_retries,
            load_retry_interval_s=args.load_retry_interval_micros / 1e6,
            poll_wait_s=args.file_system_poll_wait_seconds)
        self.registry = model_manager.ModelRegistry(options, on_change=self.update_health)
        self.batcher = batching.BatchScheduler(batching_options(args)) if args.enable_batching else None
        self.predictor = prediction_service.Predictor(self.registry, self.batcher,
                                                      args.max_request_elements or tensors.DEFAULT_MAX_ELEMENTS)

        workers = futures.ThreadPoolExecutor(max_workers=args.num_threads, thread_name_prefix="grpc")
        self.grpc_server = grpc.server(workers, options=grpc_options(args.grpc_channel_arguments))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            prediction_service.PredictionServicer(self.predictor), self.grpc_server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            prediction_service.ModelServicer(self.registry, self.reload), self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        ssl_config = read_ssl_config(args.ssl_config_file) if args.ssl_config_file else None
        try:
            address = f"{_bracket(args.host)}:{args.port}"
            if ssl_config is None:
                self.grpc_port = self.grpc_server.add_insecure_port(address)
            else:
                credentials = grpc.ssl_server_credentials(
                    [(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
                    root_certificates=ssl_config.custom_ca.encode() or None,
                    require_client_auth=ssl_config.client_verify)
                self.grpc_port = self.grpc_server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise SystemExit(f"error: cannot listen for gRPC on {args.host}:{args.port}: {error}") from error
        if not self.grpc_port:
            raise SystemExit(f"error: cannot listen for gRPC on {args.host}:{args.port}")
        self.allowed_roots: list[str] = []  # set by `start`, from the start-up configs
        self.rest_server: Optional[rest.RestServer] = None
        if args.rest_api_port:
            port = 0 if args.rest_api_port < 0 else args.rest_api_port
            try:
                self.rest_server = rest.RestServer(
                    rest.RestApi(self.predictor, self.registry, args.rest_api_num_threads,
                                 body_timeout_s=args.rest_body_timeout_s, max_body_bytes=args.rest_max_body_bytes),
                    args.host, port, args.rest_max_connections,
                    ssl_context=rest_ssl_context(ssl_config) if ssl_config else None)
            except OSError as error:
                raise SystemExit(f"error: cannot listen for REST on {args.host}:{port}: {error}") from error
        self.update_health()

    @property
    def tls(self) -> str:
        return "" if not self.args.ssl_config_file else " (TLS)"

    def start(self, configs: Sequence[Any]) -> None:
        self.allowed_roots = allowed_roots(self.args.allowed_model_roots, configs)
        self.log.info("model reloads %s", f"may serve models under {', '.join(self.allowed_roots)}"
                      if self.args.enable_model_reload else "are disabled")
        self.grpc_server.start()
        self.log.info("gRPC on %s:%d%s", self.args.host, self.grpc_port, self.tls)
        if self.rest_server is not None:
            self.rest_server.start()
            self.log.info("REST on %s:%d%s", self.args.host, self.rest_server.port, self.tls)
        self.registry.apply(configs)

    def reload(self, config: Any) -> None:
        """ModelService.HandleReloadConfigRequest: serve exactly the models of `config`, all of whose base paths
        must lie under the allowed roots (else PERMISSION_DENIED, and nothing changes)."""
        import grpc

        from serving import ServingError

        if not self.args.enable_model_reload:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               "model reloads are disabled on this server (--enable_model_reload=false)")
        configs = model_configs(config, "ReloadConfigRequest")
        for model in configs:
            if not path_is_allowed(model.base_path, self.allowed_roots):
                raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"ReloadConfigRequest: model {model.name}: base_path {model.base_path!r} is "
                                   "outside the directories this server may serve models from "
                                   "(--allowed_model_roots)")
        self.registry.apply(configs)

    def update_health(self) -> None:
        """grpc.health.v1: each model's name SERVING once it has an AVAILABLE version; "" once all have."""
        status = self._health_pb2.HealthCheckResponse
        with self._health_lock:
            availability = self.registry.availability()
            for name in self._health_names - set(availability):  # models no longer configured
                self.health.set(name, status.NOT_SERVING)
            self._health_names |= set(availability)
            for name, available in availability.items():
                self.health.set(name, status.SERVING if available else status.NOT_SERVING)
            overall = status.SERVING if availability and all(availability.values()) else status.NOT_SERVING
            self.health.set("", overall)
            self.health.set("tensorflow.serving.PredictionService", overall)

    def stop(self) -> None:
        grace = self.args.grace_period_seconds
        self.log.info("shutting down: no new requests; in-flight ones get up to %.0f s", grace)
        self.health.enter_graceful_shutdown()
        stopped = self.grpc_server.stop(grace)
        if self.rest_server is not None:
            self.rest_server.stop(grace)
        stopped.wait(grace + 1.0)
        if self.batcher is not None:
            self.batcher.stop()
        self.registry.stop()
        self.log.info("stopped")


def allowed_roots(flag: Optional[str], configs: Sequence[Any]) -> list[str]:
    """--allowed_model_roots, or by default the parent folder of every base path served at start-up."""
    if flag is not None:
        roots = [root.strip() for root in flag.split(",") if root.strip()]
    else:
        roots = [posixpath.dirname(config.base_path.rstrip("/")) if "://" in config.base_path
                 else os.path.dirname(os.path.realpath(config.base_path)) for config in configs]
    return sorted({root if "://" in root else os.path.realpath(root) for root in roots})


def path_is_allowed(base_path: str, roots: Sequence[str]) -> bool:
    """`base_path` lies under one of `roots`: for local paths after resolving symlinks and "..", so neither leads out;
    for URIs (gs://, s3://) by prefix, with ".." refused."""
    if "://" in base_path:
        if ".." in base_path.split("/"):
            return False
        return any("://" in root and (base_path.rstrip("/") + "/").startswith(root.rstrip("/") + "/")
                   for root in roots)
    resolved = os.path.realpath(base_path)
    return any("://" not in root and os.path.commonpath([resolved, root]) == root for root in roots)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def batching_options(args: argparse.Namespace) -> Any:
    from serving.batching import BatchingOptions

    values = read_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file else {}
    for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches",
                 "pad_variable_length_inputs"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    defaults = BatchingOptions()
    return BatchingOptions(
        max_batch_size=values.get("max_batch_size", defaults.max_batch_size),
        batch_timeout_s=values.get("batch_timeout_micros", defaults.batch_timeout_s * 1e6) / 1e6,
        num_batch_threads=values.get("num_batch_threads", defaults.num_batch_threads),
        max_enqueued_batches=values.get("max_enqueued_batches", defaults.max_enqueued_batches),
        pad_variable_length_inputs=values.get("pad_variable_length_inputs", defaults.pad_variable_length_inputs))


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.model_config_file and args.model_base_path:
        parser.error("give either --model_config_file or --model_name/--model_base_path, not both")
    if not args.model_config_file and not args.model_base_path:
        parser.error("nothing to serve: give --model_base_path (with --model_name) or --model_config_file")
    if args.model_config_file_poll_wait_seconds and not args.model_config_file:
        parser.error("--model_config_file_poll_wait_seconds needs --model_config_file")
    if args.num_threads < 1 or args.rest_api_num_threads < 1:
        parser.error("--num_threads and --rest_api_num_threads must be >= 1")
    if args.rest_body_timeout_s <= 0 or args.rest_max_body_bytes < 1 or args.rest_max_connections < 1:
        parser.error("--rest_body_timeout_s, --rest_max_body_bytes and --rest_max_connections must be > 0")
    if args.max_request_elements is not None and args.max_request_elements < 1:
        parser.error("--max_request_elements must be >= 1")
    if args.num_request_iterations_for_warmup < 1:
        parser.error("--num_request_iterations_for_warmup must be >= 1")
    for path in filter(None, (args.model_config_file, args.batching_parameters_file, args.ssl_config_file)):
        if not os.path.isfile(path):
            parser.error(f"no such file: {path}")


def _configure_logging() -> None:
    import logging

    sys.stdout.reconfigure(line_buffering=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s serving: %(message)s"))
    logger = logging.getLogger("serving")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    _configure_logging()
    from serving import runtime

    runtime.configure_tensorflow(args.enable_onednn)  # before TensorFlow is imported, or it does not apply
    import tensorflow as tf  # after argument checks: --help and usage errors answer at once

    from serving import ServingError
    from serving.model_manager import ModelConfig

    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    try:
        configs = (read_model_config(args.model_config_file) if args.model_config_file
                   else [ModelConfig(args.model_name, args.model_base_path)])
    except ServingError as error:
        parser.error(error.message)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = Server(args)
    server.start(configs)
    poll = args.model_config_file_poll_wait_seconds
    config_mtime = os.path.getmtime(args.model_config_file) if poll else 0.0
    while not stop.wait(poll or 1.0):
        if poll and os.path.getmtime(args.model_config_file) != config_mtime:
            config_mtime = os.path.getmtime(args.model_config_file)
            try:
                server.registry.apply(read_model_config(args.model_config_file))
                server.log.info("%s: applied", args.model_config_file)
            except ServingError as error:  # a bad edit keeps the running config, and says so
                server.log.error("%s: not applied, keeping the current models: %s", args.model_config_file,
                                 error.message)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
