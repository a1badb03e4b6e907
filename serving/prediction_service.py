"""TF Serving's gRPC services: PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus,
HandleReloadConfigRequest), over a `ModelRegistry`.

`Predictor` is the one request path; the REST API calls it too, so both answer alike. Every failure leaves as
a gRPC status with TF Serving's code and message; an unexpected exception is logged with its traceback and
answered INTERNAL, never crashing the server.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from serving import DEFAULT_SIGNATURE, ServingError, tensors
from serving.batching import BatchScheduler
from serving.model_manager import ModelRegistry, Servable, Signature

logger = logging.getLogger("serving")
SIGNATURE_DEF_FIELD = "signature_def"  # the only metadata field TF Serving knows


class Predictor:
    """Resolves, checks, runs (batched when enabled) and encodes a PredictRequest."""

    def __init__(self, registry: ModelRegistry, batcher: Optional[BatchScheduler] = None,
                 max_elements: int = tensors.DEFAULT_MAX_ELEMENTS) -> None:
        self.registry = registry
        self.batcher = batcher
        self.max_elements = max_elements  # what a request's input shapes may declare in all

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        with self.registry.serve(request.model_spec) as servable:
            return self.predict_on(servable, request)

    def predict_on(self, servable: Servable, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Runs on a servable the caller already holds (the REST API reads its signature first)."""
        signature = servable.signature(request.model_spec.signature_name)
        aliases = self._output_aliases(signature, list(request.output_filter))
        arrays = tensors.decode_inputs(request.inputs, signature.inputs, signature.name, self.max_elements)
        outputs = self._run(servable, signature, arrays)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for alias in aliases:
            response.outputs[alias].CopyFrom(tensors.ndarray_to_proto(outputs[alias], signature.outputs[alias].dtype))
        return response

    @staticmethod
    def _output_aliases(signature: Signature, output_filter: list[str]) -> list[str]:
        """TF Serving's output_filter rules and messages (predict_util.cc)."""
        if not output_filter:
            return sorted(signature.outputs)
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                                   f"the set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return output_filter

    def _run(self, servable: Servable, signature: Signature, arrays: dict[str, Any]) -> dict[str, Any]:
        if self.batcher is None or not signature.batchable:
            return servable.run(signature, arrays)
        padded = {name: frozenset(axis for axis, dim in enumerate(spec.shape.as_list()) if axis > 0 and dim is None)
                  for name, spec in signature.inputs.items()}
        return self.batcher.submit((servable, signature.name), lambda merged: servable.run(signature, merged),
                                   arrays, padded)

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """signature_def metadata exactly as TF Serving packs it: an Any holding a SignatureDefMap."""
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        with self.registry.serve(request.model_spec) as servable:
            response.model_spec.name = servable.model_name
            response.model_spec.version.value = servable.version
            response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_defs)
        return response


def _grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """ServingError -> its status; anything else -> INTERNAL with the message (and a logged traceback)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception as error:  # answered as INTERNAL; the server keeps serving
            logger.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return wrapper


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata (predict signatures only)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @_grpc_errors
    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        return self.predictor.predict(request)

    @_grpc_errors
    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.predictor.metadata(request)

    def _unsupported(self, name: str, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f"{name} is not supported by this server; use Predict with a predict signature "
                      f"('{DEFAULT_SIGNATURE}')")

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._unsupported("Classify", context)

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._unsupported("Regress", context)

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._unsupported("MultiInference", context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: version states, and config reloads through `reload`."""

    def __init__(self, registry: ModelRegistry,
                 reload: Callable[[model_server_config_pb2.ModelServerConfig], None]) -> None:
        self.registry = registry
        self.reload = reload

    @_grpc_errors
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> Any:
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        return self.registry.status(request.model_spec)

    @_grpc_errors
    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext) -> Any:
        self.reload(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()  # error_code OK
        return response
