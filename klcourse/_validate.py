"""Input validation shared by every klcourse function.

Bad input gets a ``ValueError`` that names the argument and the problem; it never
turns into a silently wrong number.
"""

from __future__ import annotations

import math

import numpy as np

#: tolerance on ``sum(p) == 1`` for probability vectors given without ``normalize=True``
SUM_TOL = 1e-6


def as_float_array(x, name: str) -> np.ndarray:
    """Convert ``x`` to a float64 array, rejecting non-numeric input, NaN and inf."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric (array-like of numbers), got {type(x).__name__}") from exc
    if arr.size and not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValueError(f"{name} contains {bad}; every entry must be finite")
    return arr


def check_nonnegative(arr: np.ndarray, name: str) -> None:
    if arr.size and np.min(arr) < 0:
        raise ValueError(f"{name} has negative entries (min {np.min(arr):.3g}); probabilities must be >= 0")


def check_positive(arr: np.ndarray, name: str) -> None:
    if arr.size and np.min(arr) <= 0:
        raise ValueError(f"{name} must be strictly positive (min {np.min(arr):.3g})")


def probability_array(p, name: str, *, axis: int = -1, normalize: bool = False) -> np.ndarray:
    """Validate a (batch of) probability vector(s) along ``axis``.

    With ``normalize=True`` each vector is divided by its sum (which must be positive);
    otherwise each must already sum to 1 within :data:`SUM_TOL`.
    """
    arr = as_float_array(p, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be at least 1-D (a vector of probabilities), got a scalar")
    if arr.shape[axis] == 0:
        raise ValueError(f"{name} is empty along axis {axis}")
    check_nonnegative(arr, name)
    total = arr.sum(axis=axis, keepdims=True)
    if normalize:
        if np.any(total <= 0):
            raise ValueError(f"{name} sums to 0 along axis {axis}; cannot normalize")
        return arr / total
    if np.any(np.abs(total - 1.0) > SUM_TOL):
        worst = float(np.max(np.abs(total - 1.0)))
        raise ValueError(
            f"{name} does not sum to 1 along axis {axis} (off by up to {worst:.3g}); "
            "divide it by its sum first"
        )
    return arr


def broadcast_pair(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str], *, axis: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast two arrays, turning numpy's error into one that names both arguments.

    With ``axis`` (the outcome axis of probability vectors) only the *other* axes may
    broadcast: a length-1 vector is not silently stretched into ``n`` outcomes.
    """
    mismatch = f"shape mismatch: {names[0]} has shape {a.shape}, {names[1]} has shape {b.shape}"
    try:
        a_out, b_out = np.broadcast_arrays(a, b)
    except ValueError:
        raise ValueError(mismatch) from None
    if axis is not None and -a_out.ndim <= axis < a_out.ndim:
        ax = axis % a_out.ndim
        for arr in (a, b):
            own = ax - (a_out.ndim - arr.ndim)  # the same axis counted in arr's own dimensions
            if own < 0 or arr.shape[own] != a_out.shape[ax]:
                raise ValueError(f"{mismatch} (different numbers of outcomes along axis {axis})")
    return a_out, b_out


def broadcast_all(arrays, names) -> list[np.ndarray]:
    """Broadcast several arrays together; on failure name every argument and its shape."""
    try:
        return list(np.broadcast_arrays(*arrays))
    except ValueError:
        shapes = ", ".join(f"{n} has shape {a.shape}" for n, a in zip(names, arrays, strict=True))
        raise ValueError(f"shape mismatch: {shapes}") from None


def log_base_factor(base) -> float:
    """Divisor turning nats into the requested unit; ``base=None`` means nats."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, (int, float, np.integer, np.floating)):
        raise ValueError(f"base must be None (nats) or a number > 0 and != 1, got {base!r}")
    base = float(base)
    if not math.isfinite(base) or base <= 0 or base == 1:
        raise ValueError(f"base must be None (nats) or a number > 0 and != 1, got {base!r}")
    return math.log(base)


def scalar_or_array(x):
    """Return a Python float for 0-d results, the array otherwise."""
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x
