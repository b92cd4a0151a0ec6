"""Compact, lossless snapshots of float data: vectors as base64 of their bytes.

JSON float text is about four times the size of float32 bytes and ten times slower to
write and read; the snapshots of a busy stream write thousands of story vectors, so the
vectors are packed as ``{"__f32__": BASE64}`` (or ``__f64__`` when float32 would lose
bits).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

_PACK_MIN = 16


def pack_array(a: np.ndarray) -> dict[str, str]:
    """A 1-d float array as base64 of its float32 bytes, or float64 when float32 would lose bits."""
    if a.dtype in (np.float16, np.float32):
        return {"__f32__": base64.b64encode(a.astype(np.float32).tobytes()).decode("ascii")}
    a64 = np.asarray(a, dtype=np.float64)
    with np.errstate(over="ignore"):
        a32 = a64.astype(np.float32)
    if np.array_equal(a32.astype(np.float64), a64, equal_nan=True):
        return {"__f32__": base64.b64encode(a32.tobytes()).decode("ascii")}
    return {"__f64__": base64.b64encode(a64.tobytes()).decode("ascii")}


def unpack_array(obj: Any, dtype: Any = np.float64) -> np.ndarray:
    """The array of :func:`pack_array` (or of a plain list of floats), as ``dtype``."""
    if isinstance(obj, dict):
        key, stored = ("__f32__", np.float32) if "__f32__" in obj else ("__f64__", np.float64)
        return np.frombuffer(base64.b64decode(obj[key]), dtype=stored).astype(dtype)
    return np.asarray(obj, dtype=dtype)


def pack_floats(obj: Any) -> Any:
    """``obj`` with every long list of floats (JSON data) packed by :func:`pack_array`."""
    if isinstance(obj, dict):
        return {k: pack_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        if len(obj) >= _PACK_MIN and all(type(x) is float for x in obj):
            return pack_array(np.asarray(obj, dtype=np.float64))
        return [pack_floats(v) for v in obj]
    return obj


def unpack_floats(obj: Any) -> Any:
    """The inverse of :func:`pack_floats`: packed arrays back to lists of floats."""
    if isinstance(obj, dict):
        if len(obj) == 1 and ("__f32__" in obj or "__f64__" in obj):
            return unpack_array(obj).tolist()
        return {k: unpack_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack_floats(v) for v in obj]
    return obj
