"""TensorProto <-> numpy, checked against a signature's input specs the way TF Serving's session would check them.

Requests are decoded once, here, so every malformed input (unknown or missing key, wrong dtype, wrong rank
or static dimension, inconsistent batch sizes, a value count that does not fit the shape) is answered with
INVALID_ARGUMENT naming the input, before anything runs. Outputs are encoded like TF Serving's default
(`Tensor::AsProtoField`: `float_val`, `string_val`, ...), which every TF client decodes with `tf.make_ndarray`.
"""
from __future__ import annotations

import functools
from typing import Mapping, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving import ServingError

# AsProtoField: which repeated field holds each dtype's values.
_FIELD_BY_DTYPE = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """DT_FLOAT style names, as TF Serving's messages and metadata spell them."""
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else f"dtype {dtype}"


def shape_text(shape: tf.TensorShape | tuple[Optional[int], ...]) -> str:
    dims = list(shape) if isinstance(shape, tuple) else (shape.as_list() if shape.rank is not None else None)
    if dims is None:
        return "<unknown rank>"
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


DEFAULT_MAX_ELEMENTS = 1 << 22
"""Elements a request's input tensors may declare in all (`--max_request_elements`): 4,194,304, e.g. a batch of
4,096 rows of 1,024 values. A TensorProto's shape is checked against it before anything is allocated, because a
shape with few or no values is expanded to its full size (TF's Tensor::FromProto repeats the last value)."""
MAX_RANK = 64  # numpy's limit; TF's is 254


def declared_elements(name: str, shape: tuple[int, ...], limit: int) -> int:
    """The element count `shape` declares, refused (INVALID_ARGUMENT naming the input) above `limit`.

    Computed with Python integers, so dimensions like [2^32, 2^32] cannot overflow into a small count."""
    if len(shape) > MAX_RANK:
        raise _invalid(f"input '{name}': rank {len(shape)} is more than the {MAX_RANK} dimensions this server accepts")
    if any(size < 0 for size in shape):
        raise _invalid(f"input '{name}': negative dimension in shape {list(shape)}")
    count = 1
    for size in shape:
        count *= size
    if count > limit:
        raise _invalid(f"input '{name}': shape {list(shape)} declares {count} elements, more than the {limit} a "
                       f"request may send (--max_request_elements)")
    if any(size > limit for size in shape):
        raise _invalid(f"input '{name}': shape {list(shape)} has a dimension larger than the {limit} elements a "
                       f"request may send (--max_request_elements)")
    return count


def proto_to_ndarray(name: str, proto: tensor_pb2.TensorProto, max_elements: int = DEFAULT_MAX_ELEMENTS
                     ) -> np.ndarray:
    """Decodes one request tensor; strings come back as an object array of bytes (what tf.constant takes).

    The declared shape is checked against `max_elements` and against the values actually sent before any array
    is allocated: more values than the shape holds, or `tensor_content` whose length is not the shape's byte size,
    is INVALID_ARGUMENT. Fewer values are expanded as TF expands them (the last value repeated; zeros or "" when
    none are sent), which the element limit bounds."""
    if proto.dtype == types_pb2.DT_INVALID:
        raise _invalid(f"input '{name}': the TensorProto has no dtype (DT_INVALID)")
    if proto.tensor_shape.unknown_rank:
        raise _invalid(f"input '{name}': the TensorProto has an unknown rank; send a full shape")
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    count = declared_elements(name, shape, max_elements)
    if proto.dtype == types_pb2.DT_STRING:
        if proto.tensor_content:
            raise _invalid(f"input '{name}': DT_STRING values must be in string_val, not tensor_content")
        values = proto.string_val
        if len(values) > count:
            raise _invalid(f"input '{name}': {len(values)} values do not fit shape {list(shape)} "
                           f"({count} elements)")
        if len(values) == count:  # the usual request: one C-level copy of the repeated field
            return np.array(values, dtype=object).reshape(shape)
        array = np.empty(count, dtype=object)
        if values:
            array[:len(values)] = list(values)
            array[len(values):] = values[-1]  # TF's Tensor::FromProto repeats the last value
        else:
            array[:] = b""
        return array.reshape(shape)
    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
        _ = dtype.as_numpy_dtype  # raises for resource, variant, ...: no values a request can carry
    except (TypeError, KeyError) as error:
        raise _invalid(f"input '{name}': {dtype_name(proto.dtype)} tensors cannot be sent in a request") from error
    if proto.tensor_content:
        if dtype.size and len(proto.tensor_content) != count * dtype.size:
            raise _invalid(f"input '{name}': tensor_content holds {len(proto.tensor_content)} bytes, but shape "
                           f"{list(shape)} of {dtype_name(proto.dtype)} needs {count * dtype.size}")
    else:
        sent = max((len(getattr(proto, field.name)) for field, _ in proto.ListFields()
                    if field.name.endswith("_val")), default=0)
        if dtype.is_complex:
            sent //= 2  # (real, imaginary) pairs
        if sent > count:
            raise _invalid(f"input '{name}': {sent} values do not fit shape {list(shape)} ({count} elements)")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError, KeyError) as error:
        raise _invalid(f"input '{name}': cannot decode {dtype_name(proto.dtype)} tensor of shape "
                       f"{list(shape)}: {error}") from error


@functools.lru_cache(maxsize=4096)
def spec_facts(spec: tf.TensorSpec) -> tuple[int, Optional[tuple[Optional[int], ...]]]:
    """(dtype enum, dimensions or None for an unknown rank) of a spec, read once: TensorSpec's properties cost
    about a microsecond per read, and every request reads them for every input (a TensorSpec is immutable)."""
    return spec.dtype.as_datatype_enum, None if spec.shape.rank is None else tuple(spec.shape.as_list())


def check_input(name: str, array: np.ndarray, dtype: int, spec: tf.TensorSpec, signature_name: str) -> None:
    """The dtype, rank and static dimensions the signature declares for this input."""
    expected, dims = spec_facts(spec)
    if dtype != expected:
        raise _invalid(f"input '{name}' of signature '{signature_name}' expects {dtype_name(expected)} "
                       f"but got {dtype_name(dtype)}")
    if dims is None:
        return
    if array.ndim != len(dims):
        raise _invalid(f"input '{name}' of signature '{signature_name}' expects rank {len(dims)} "
                       f"(shape {shape_text(spec.shape)}) but got rank {array.ndim} (shape {list(array.shape)})")
    for axis, (want, got) in enumerate(zip(dims, array.shape)):
        if want is not None and want != got:
            raise _invalid(f"input '{name}' of signature '{signature_name}' expects shape {shape_text(spec.shape)} "
                           f"but got {list(array.shape)} (dimension {axis} must be {want})")


def check_input_names(requested: set[str], specs: Mapping[str, tf.TensorSpec], signature_name: str) -> None:
    """TF Serving's own message for missing or extra inputs (predict_util.cc), which names the keys."""
    expected = set(specs)
    if requested == expected:
        return
    extra, missing = sorted(requested - expected), sorted(expected - requested)
    raise _invalid(
        f"input size does not match signature: {len(requested)}!={len(expected)} "
        f"len({{{','.join(sorted(requested))}}}) != len({{{','.join(sorted(expected))}}}). "
        f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}. "
        f"(signature '{signature_name}')")


def batch_size(arrays: Mapping[str, np.ndarray], specs: Mapping[str, tf.TensorSpec]) -> Optional[int]:
    """The shared 0th dimension when every input is batched (rank >= 1, leading dim None); else None.

    Inconsistent leading dimensions are a client error: the rows of one request must line up.
    """
    if not specs or any(not dims or dims[0] is not None for dims in (spec_facts(spec)[1] for spec in specs.values())):
        return None
    sizes = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sorted(sizes.items()))
        raise _invalid(f"inputs have inconsistent batch sizes (0th dimension): {listed}")
    return next(iter(sizes.values()))


def decode_inputs(inputs: Mapping[str, tensor_pb2.TensorProto], specs: Mapping[str, tf.TensorSpec],
                  signature_name: str, max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """A request's input map, decoded and checked against the signature's input specs.

    `max_elements` bounds all inputs together: each shape is checked against what the earlier ones left."""
    if len(inputs) != len(specs) or not all(name in specs for name in inputs):
        check_input_names(set(inputs), specs, signature_name)
    arrays: dict[str, np.ndarray] = {}
    remaining = max_elements
    for name in sorted(inputs):
        proto = inputs[name]
        array = proto_to_ndarray(name, proto, remaining)
        remaining -= array.size
        check_input(name, array, proto.dtype, specs[name], signature_name)
        arrays[name] = array
    batch_size(arrays, specs)
    return arrays


def ndarray_to_proto(array: np.ndarray, dtype: tf.DType) -> tensor_pb2.TensorProto:
    """AsProtoField encoding (TF Serving's default for Predict responses)."""
    enum = dtype.as_datatype_enum
    proto = tensor_pb2.TensorProto(dtype=enum, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(size)) for size in array.shape]))
    field = _FIELD_BY_DTYPE.get(enum)
    if field is None:  # half, bfloat16, complex, ...: tf's own encoder knows their fields
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=dtype))
        return proto
    values = array.ravel().tolist()
    if enum == types_pb2.DT_STRING and not (array.dtype.kind == "S" or _all_bytes(values)):
        values = [value if isinstance(value, bytes) else str(value).encode("utf-8") for value in values]
    getattr(proto, field).extend(values)  # one C-level copy of the whole list
    return proto


def _all_bytes(values: list[object]) -> bool:
    """What TensorFlow returns for a string tensor: every element already bytes (checked in C, no Python loop)."""
    return set(map(type, values)) <= {bytes}


def placeholder_input(spec: tf.TensorSpec, rows: int = 1) -> np.ndarray:
    """A neutral value for an input spec: unknown dims 1 (rows for the batch dim), "" for strings, else zeros.

    Used to warm up a model that ships no warm-up records: it traces and runs every signature once.
    """
    if spec.shape.rank is None:
        shape: tuple[int, ...] = (rows,)
    else:
        shape = tuple((rows if axis == 0 else 1) if dim is None else dim
                      for axis, dim in enumerate(spec.shape.as_list()))
    if spec.dtype == tf.string:
        array = np.empty(shape, dtype=object)
        array.fill(b"")
        return array
    return np.zeros(shape, dtype=spec.dtype.as_numpy_dtype)
