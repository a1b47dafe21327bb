"""The shape of an ONNX model's first graph input, read with the ``onnx`` package (or a minimal protobuf reader)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


def onnx_input_shape(path: Path) -> list[int] | None:
    """The first graph input's shape (0 for a symbolic dim), or None when the file or the shape cannot be read.

    Graph inputs that are initializers (listed among the inputs by exporters before IR version 4) are skipped.
    """
    try:
        import onnx
    except ImportError:
        return _proto_input_shape(path)
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - onnx raises protobuf and its own errors; an unreadable file has no shape
        return None
    initializers = {t.name for t in graph.initializer}
    for vi in graph.input:
        if vi.name in initializers or not vi.type.HasField("tensor_type"):
            continue
        if vi.type.tensor_type.HasField("shape"):
            return [int(d.dim_value) for d in vi.type.tensor_type.shape.dim]
    return None


# Fallback: onnx is only in the serve/dev extras, and the track extra's ONNX detector still needs the input size.


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _pb_fields(buf: memoryview) -> Iterator[tuple[int, Any]]:
    """Yield ``(field_number, value)`` of one protobuf message (ints for varints, memoryviews for bytes)."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _fields(buf: memoryview, number: int) -> list[Any]:
    return [v for f, v in _pb_fields(buf) if f == number]


def _proto_input_shape(path: Path) -> list[int] | None:
    """:func:`onnx_input_shape` read straight from the protobuf.

    ModelProto.graph = 7; GraphProto.initializer = 5, .input = 11; TensorProto.name = 8; ValueInfoProto.name = 1,
    .type = 2; TypeProto.tensor_type = 1; Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1.
    """
    try:
        model = memoryview(path.read_bytes())
        graph = next((v for f, v in _pb_fields(model) if f == 7 and isinstance(v, memoryview)), None)
        if graph is None:
            return None
        initializers = {bytes(name) for t in _fields(graph, 5) for name in _fields(t, 8)}
        for vi in _fields(graph, 11):
            names = _fields(vi, 1)
            shapes = [s for ty in _fields(vi, 2) for tensor in _fields(ty, 1) for s in _fields(tensor, 2)]
            if (bytes(names[-1]) if names else b"") not in initializers and shapes:
                return [next((int(x) for x in _fields(dim, 1)), 0) for dim in _fields(shapes[-1], 1)]
    except (ValueError, IndexError, OSError, TypeError):
        return None
    return None
