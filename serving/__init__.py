"""A model server that speaks TensorFlow Serving's gRPC and REST APIs, and a client for it (docs/design.md §7).

No `tensorflow_model_server` binary can be installed here (docs/design.md §8), so `serving.server` stands in for it:
same directory layout, same flags, same protos and status codes, so the client code in `serving.client` works
against either. Modules: `server` (CLI and wiring), `model_manager` (versions: discover, load, warm up, swap,
status), `prediction_service` (gRPC servicers), `rest` (REST API), `batching` (request batching), `tensors`
(TensorProto <-> numpy).
"""
from __future__ import annotations

import grpc

DEFAULT_SIGNATURE = "serving_default"  # TF Serving's kDefaultServingSignatureDefKey
PREDICT_METHOD_NAME = "tensorflow/serving/predict"


class ServingError(Exception):
    """A request failure carrying the gRPC status code TF Serving answers with, so every API reports it alike."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"
