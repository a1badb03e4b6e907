"""Recommendations over TF Serving's gRPC API: a small library and a CLI.

Built only on `tensorflow_serving.apis` stubs, so it works against `serving.server` and a real
`tensorflow_model_server` alike. TF Serving has no optional inputs, so the client fills the contract's
(docs/design.md §7): an empty `station_id`, and `exclude_track_ids` padded with "" to the width E the model declares
in its metadata (read once per version with GetModelMetadata; a signature that leaves E open gets the
exclusions as given, and the model enforces its maximum). An empty history is sent as one "" token. Empty
track ids in the answer are padding and are dropped.

    python -m serving.client --server localhost:8500 --model_name music_retrieval \\
        --history "t1:like,t2:skip,t3:listen" --exclude t9 -k 10

prints {"model": ..., "version": ..., "recommendations": [{"track_id": ..., "score": ...}, ...]}.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import grpc

from schema.contract import LABELS

if TYPE_CHECKING:
    from tensorflow_serving.apis import predict_pb2

RECOMMEND_SIGNATURE = "serving_default"
EMBEDDING_SIGNATURE = "query_embedding"
HISTORY_TRACK_IDS, HISTORY_FEEDBACK = "history_track_ids", "history_feedback"
STATION_ID, EXCLUDE_TRACK_IDS = "station_id", "exclude_track_ids"
TRACK_IDS, SCORES, QUERY_EMBEDDING = "track_ids", "scores", "query_embedding"
FEEDBACK_NAMES: tuple[str, ...] = LABELS  # like, listen, skip, dislike

History = Sequence[tuple[str, str]]


def check_history(history: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(track_id, feedback) pairs with a known feedback name; a mistake fails here, not on the server."""
    checked = []
    for position, item in enumerate(history):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"history item {position} must be (track_id, feedback), got {item!r}")
        track, feedback = item
        if not track:
            raise ValueError(f"history item {position} has an empty track id")
        if feedback not in FEEDBACK_NAMES:
            raise ValueError(f"history item {position} ({track}): unknown feedback {feedback!r}; "
                             f"expected one of {', '.join(FEEDBACK_NAMES)}")
        checked.append((str(track), str(feedback)))
    return checked


def parse_history(text: str) -> list[tuple[str, str]]:
    """'t1:like,t2:skip' -> [("t1", "like"), ("t2", "skip")]; the last ':' splits, so ids may contain ':'."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        track, sep, feedback = item.rpartition(":")
        if not sep:
            raise ValueError(f"history item {item!r} is not TRACK:FEEDBACK")
        pairs.append((track, feedback))
    return check_history(pairs)


def _float32(value: Any) -> float:
    """A float32 as the shortest float that reads back the same (0.05, not 0.05000000074505806)."""
    return float(str(value))


def _apis() -> Any:
    """The TF Serving protos and stubs, imported on first use (they import TensorFlow, which takes seconds)."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    return argparse.Namespace(tf=tf, json_format=json_format, get_model_metadata_pb2=get_model_metadata_pb2,
                              get_model_status_pb2=get_model_status_pb2, predict_pb2=predict_pb2,
                              model_service_pb2_grpc=model_service_pb2_grpc,
                              prediction_service_pb2_grpc=prediction_service_pb2_grpc)


class RecommendationClient:
    """One gRPC channel to a model server, for one model name."""

    def __init__(self, target: str, model_name: str, timeout_s: float = 10.0,
                 channel: Optional[grpc.Channel] = None) -> None:
        self.api = _apis()
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._channel = channel or grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
        self._predict = self.api.prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = self.api.model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._shapes: dict[Optional[int], tuple[int, int]] = {}  # version (None: latest) -> (E, K)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RecommendationClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- metadata and status --

    def _signature_defs(self, version: Optional[int]) -> tuple[Any, Any]:
        request = self.api.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = version
        response = self._predict.GetModelMetadata(request, timeout=self.timeout_s)
        signature_defs = self.api.get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        return response, signature_defs

    def metadata(self, version: Optional[int] = None) -> dict[str, Any]:
        """The served version and its signature_defs (as JSON-ready dicts)."""
        response, signature_defs = self._signature_defs(version)
        return {"model": response.model_spec.name, "version": response.model_spec.version.value,
                "signature_def": self.api.json_format.MessageToDict(signature_defs,
                                                                    preserving_proto_field_name=True)["signature_def"]}

    def status(self, version: Optional[int] = None) -> list[dict[str, Any]]:
        """GetModelStatus: every version's state, with the error of a failed load."""
        request = self.api.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = version
        response = self._models.GetModelStatus(request, timeout=self.timeout_s)
        state_name = self.api.get_model_status_pb2.ModelVersionStatus.State.Name
        return [{"version": status.version, "state": state_name(status.state),
                 "error_code": grpc.StatusCode.OK.name if status.status.error_code == 0
                 else next((code.name for code in grpc.StatusCode if code.value[0] == status.status.error_code),
                           str(status.status.error_code)),
                 "error_message": status.status.error_message} for status in response.model_version_status]

    def _exclude_width_and_k(self, version: Optional[int], refresh: bool = False) -> tuple[int, int]:
        """E (exclude_track_ids' static width) and K (track_ids' width, -1 if not static) from the metadata."""
        if refresh or version not in self._shapes:
            _, signature_defs = self._signature_defs(version)
            signature = signature_defs.signature_def.get(RECOMMEND_SIGNATURE)
            if signature is None or EXCLUDE_TRACK_IDS not in signature.inputs:
                raise ValueError(f"{self.model_name} has no '{RECOMMEND_SIGNATURE}' signature with an "
                                 f"'{EXCLUDE_TRACK_IDS}' input; is it a recommender of this project?")
            exclude_dims = signature.inputs[EXCLUDE_TRACK_IDS].tensor_shape.dim
            output_dims = signature.outputs[TRACK_IDS].tensor_shape.dim if TRACK_IDS in signature.outputs else []
            width = exclude_dims[1].size if len(exclude_dims) == 2 else -1
            k = output_dims[1].size if len(output_dims) == 2 else -1
            self._shapes[version] = (width, k)
        return self._shapes[version]

    # -- predictions --

    def _request(self, signature: str, history: History, station_id: str,
                 version: Optional[int]) -> "predict_pb2.PredictRequest":
        tf = self.api.tf
        checked = check_history(history)
        request = self.api.predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        tracks = [track for track, _ in checked] or [""]  # an empty history is one padding token
        feedback = [label for _, label in checked] or [""]
        request.inputs[HISTORY_TRACK_IDS].CopyFrom(tf.make_tensor_proto([tracks], dtype=tf.string))
        request.inputs[HISTORY_FEEDBACK].CopyFrom(tf.make_tensor_proto([feedback], dtype=tf.string))
        request.inputs[STATION_ID].CopyFrom(tf.make_tensor_proto([station_id], dtype=tf.string))
        return request

    def recommend(self, history: History, station_id: str = "", exclude: Sequence[str] = (),
                  k: Optional[int] = None, version: Optional[int] = None) -> dict[str, Any]:
        """Top tracks for one listener, best first, never one of `exclude` (nor a disliked history track)."""
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        for attempt in range(2):
            width, model_k = self._exclude_width_and_k(version, refresh=attempt > 0)
            if width >= 0 and len(exclude) > width:
                raise ValueError(f"{len(exclude)} exclusions, but {self.model_name} takes at most {width} "
                                 f"(its exclude_track_ids width)")
            if k is not None and model_k > 0 and k > model_k:
                raise ValueError(f"k={k}, but {self.model_name} returns {model_k} tracks; ask for at most {model_k}")
            request = self._request(RECOMMEND_SIGNATURE, history, station_id, version)
            padded = list(exclude) + [""] * (max(width, len(exclude)) - len(exclude))
            request.inputs[EXCLUDE_TRACK_IDS].CopyFrom(
                self.api.tf.make_tensor_proto([padded], dtype=self.api.tf.string, shape=[1, len(padded)]))
            try:
                response = self._predict.Predict(request, timeout=self.timeout_s)
                break
            except grpc.RpcError as error:
                # A newer version may declare another width: re-read the metadata once, then give up.
                if attempt or version is not None or error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
        make_ndarray = self.api.tf.make_ndarray
        track_ids = make_ndarray(response.outputs[TRACK_IDS])[0]
        scores = make_ndarray(response.outputs[SCORES])[0]
        recommendations = [{"track_id": track.decode("utf-8"), "score": _float32(score)}
                           for track, score in zip(track_ids, scores) if track]
        return {"model": response.model_spec.name or self.model_name, "version": response.model_spec.version.value,
                "recommendations": recommendations[:k] if k is not None else recommendations}

    def query_embedding(self, history: History, station_id: str = "",
                        version: Optional[int] = None) -> dict[str, Any]:
        """The query tower's embedding for one listener (the second signature)."""
        request = self._request(EMBEDDING_SIGNATURE, history, station_id, version)
        response = self._predict.Predict(request, timeout=self.timeout_s)
        embedding = self.api.tf.make_ndarray(response.outputs[QUERY_EMBEDDING])[0]
        return {"model": response.model_spec.name or self.model_name, "version": response.model_spec.version.value,
                "embedding": [_float32(value) for value in embedding]}


# --- CLI ------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="HOST:PORT of the gRPC API (TF Serving's default is 8500)")
    parser.add_argument("--model_name", required=True, help="model name, e.g. music_retrieval")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--history", help="the listener's recent plays, oldest first: 'TRACK:FEEDBACK,...' with "
                                        f"FEEDBACK one of {', '.join(FEEDBACK_NAMES)} ('' for none)")
    mode.add_argument("--status", action="store_true", help="print GetModelStatus (every version's state) instead")
    mode.add_argument("--metadata", action="store_true", help="print the served version's signatures instead")
    parser.add_argument("--station", default="", help="station / context id (default: none)")
    parser.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="TRACK",
                        help="track ids never to recommend (at most the model's exclude width)")
    parser.add_argument("-k", type=int, default=None, help="how many tracks (default: all the model returns)")
    parser.add_argument("--version", type=int, default=None, help="model version (default: the newest served)")
    parser.add_argument("--embedding", action="store_true", help="print the query embedding instead of tracks")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    history: list[tuple[str, str]] = []
    if args.history is not None:
        try:
            history = parse_history(args.history)
        except ValueError as error:
            parser.error(f"--history: {error}")
    if args.k is not None and args.k < 1:
        parser.error("-k must be >= 1")
    client = RecommendationClient(args.server, args.model_name, args.timeout)
    try:
        if args.status:
            result: Any = {"model": args.model_name, "versions": client.status(args.version)}
        elif args.metadata:
            result = client.metadata(args.version)
        elif args.embedding:
            result = client.query_embedding(history, args.station, args.version)
        else:
            result = client.recommend(history, args.station, args.exclude, args.k, args.version)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        client.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
