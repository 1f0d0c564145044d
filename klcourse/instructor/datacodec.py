"""Answers as plain data: the only thing that leaves a sandbox.

:func:`encode` turns a learner's answer into JSON-compatible data — numbers, strings, lists and tuples of them,
and NumPy arrays as ``.npy`` bytes (base64) — and :func:`decode` turns it back, *validating* it: numeric dtypes
only, ``np.load(..., allow_pickle=False)``, bounded sizes and nesting. Nothing is ever unpickled, so a forged
channel can claim some answer, never run code in the grader or claim a verdict.
"""

from __future__ import annotations

import base64
import io
import math
import numbers

import numpy as np

MAX_ELEMENTS = 1_000_000  # numbers in one answer
MAX_STRING = 10_000  # characters in one string
MAX_ITEMS = 1_000  # entries of one list/tuple
MAX_DEPTH = 6
#: Bytes of one record (one JSON line) on a sandbox's output channel. The grader drops longer lines unparsed:
#: 1 MB of ``[],`` parses into ~350 000 Python lists, and the channel allows 16 MB.
MAX_RECORD_BYTES = 2**20
_NUMERIC_KINDS = "biuf"


class DataError(ValueError):
    """The data is not a valid answer (wrong type, too large, malformed)."""


def _float(x: float):
    if math.isnan(x):
        return {"t": "float", "v": "nan"}
    if math.isinf(x):
        return {"t": "float", "v": "inf" if x > 0 else "-inf"}
    return {"t": "float", "v": x}


def encode(answer, depth: int = 0, budget: list | None = None):
    """Learner's answer -> JSON-compatible data. Raises :class:`DataError` for what cannot be data."""
    budget = budget if budget is not None else [MAX_ELEMENTS]
    if depth > MAX_DEPTH:
        raise DataError("nested too deeply")
    if answer is None or answer is ...:
        return {"t": "none"}
    if hasattr(answer, "detach") and hasattr(answer, "numpy"):  # a torch tensor
        answer = answer.detach().cpu().numpy()
    if isinstance(answer, (bool, np.bool_)):
        return {"t": "bool", "v": bool(answer)}
    if isinstance(answer, numbers.Integral) and not isinstance(answer, np.ndarray):
        value = int(answer)
        if abs(value) > 2**53:
            return _float(float(value))
        return {"t": "int", "v": value}
    if isinstance(answer, numbers.Real) and not isinstance(answer, np.ndarray):
        return _float(float(answer))
    if isinstance(answer, str):
        if len(answer) > MAX_STRING:
            raise DataError(f"a string longer than {MAX_STRING} characters")
        return {"t": "str", "v": answer}
    if isinstance(answer, (list, tuple)):
        if len(answer) > MAX_ITEMS:
            raise DataError(f"a list of more than {MAX_ITEMS} items")
        return {"t": "tuple" if isinstance(answer, tuple) else "list",
                "v": [encode(a, depth + 1, budget) for a in answer]}
    if isinstance(answer, np.ndarray):
        if answer.dtype.kind not in _NUMERIC_KINDS:
            try:
                answer = answer.astype(float)
            except (TypeError, ValueError):
                raise DataError(f"an array of {answer.dtype} (not numbers)") from None
        budget[0] -= answer.size
        if budget[0] < 0:
            raise DataError(f"more than {MAX_ELEMENTS} numbers")
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(answer), allow_pickle=False)
        return {"t": "npy", "v": base64.b64encode(buf.getvalue()).decode("ascii")}
    raise DataError(f"a {type(answer).__name__} (answers are numbers, strings, arrays or tuples of them)")


def decode(data, depth: int = 0, budget: list | None = None):
    """JSON data -> Python value (float, int, str, bool, None, list, tuple, ndarray), validated."""
    budget = budget if budget is not None else [MAX_ELEMENTS]
    if depth > MAX_DEPTH:
        raise DataError("nested too deeply")
    if not isinstance(data, dict) or not isinstance(data.get("t"), str):
        raise DataError("malformed data")
    kind, value = data["t"], data.get("v")
    if kind == "none":
        return None
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53:
        return value
    if kind == "float":
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    if kind == "str" and isinstance(value, str) and len(value) <= MAX_STRING:
        return value
    if kind in ("list", "tuple") and isinstance(value, list) and len(value) <= MAX_ITEMS:
        items = [decode(v, depth + 1, budget) for v in value]
        return tuple(items) if kind == "tuple" else items
    if kind == "npy" and isinstance(value, str) and len(value) <= 12 * MAX_ELEMENTS:
        try:
            arr = np.load(io.BytesIO(base64.b64decode(value, validate=True)), allow_pickle=False)
        except Exception as exc:
            raise DataError(f"unreadable array ({type(exc).__name__})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in _NUMERIC_KINDS:
            raise DataError("an array that is not numeric")
        budget[0] -= arr.size
        if budget[0] < 0:
            raise DataError(f"more than {MAX_ELEMENTS} numbers")
        return arr
    raise DataError(f"malformed data of type {kind!r}")
