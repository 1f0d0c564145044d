"""Discrete KL: accuracy on nearly identical distributions and speed on 1e7 elements.

Run ``.venv/bin/python benchmarks/discrete.py`` (about 15 s on 2 cores) to print the table;
``benchmarks/accuracy.py`` imports :func:`run` and prints the same rows.  Nothing is asserted
here (the assertions live in ``tests/test_divergences.py``).

Methods compared (each computes ``D(P || Q) = sum p log(p/q)`` in nats):

* ``klcourse.kl_divergence(p, q)``;
* the textbook ``np.sum(p * np.log(p / q))``;
* ``scipy.special.rel_entr(p, q).sum()`` (elementwise ``p log(p/q)``, then a pairwise sum);
* ``torch.nn.functional.kl_div(torch.log(q), p, reduction="sum")``.  Mind the argument
  order: the *first* argument ("input") is the log-probabilities of the distribution in the
  *second* slot of ``D(P || Q)``, i.e. ``log q``; the second ("target") is ``p``.  It returns
  ``sum p (log p - input)`` = ``D(P || Q)``.  Swapping them silently computes something else.

Columns
-------
worst_rel_err   max |D - D_ref| / D_ref over the stress set: ``p ~ Dirichlet(1)`` on 100
                outcomes, ``q = p (1 + delta * z)`` renormalised, ``z`` standard normal,
                ``delta`` in 1e-1 ... 1e-15 and 0 (``q`` = ``p`` renormalised, D ~ 1e-33),
                8 seeds each.  ``D_ref``: mpmath at 60 digits from the very same float64
                inputs, normalised with their exact (rational) sums.
share_negative  fraction of stress-set results below 0 (a KL never is).
max_abs_self    largest |D(P || P)| over the stress-set ``p`` (should be exactly 0).
seconds         best of 3 wall times on 1e7 float64 elements, p and q independent Dirichlet(1).
seconds_near    the same for q = p (1 + 1e-6 z) renormalised.
"""

from __future__ import annotations

import math
import sys
import time
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
from scipy.special import rel_entr

from klcourse.numerics import discrete_stress_set

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from klcourse import kl_divergence  # noqa: E402

DELTAS = [10.0**-k for k in range(1, 16)] + [0.0]
N_OUTCOMES = 100
SEEDS = range(8)
N_LARGE = 10**7
DPS = 60


def stress_set():
    """Rows of p and q (shape (len(DELTAS) * len(SEEDS), N_OUTCOMES)): the course's own stress set."""
    p, q, _ = discrete_stress_set(DELTAS, N_OUTCOMES, SEEDS)
    return p, q


def mp_kl(p, q):
    """D(p/P || q/Q) at DPS digits with the exact sums P, Q of the float64 entries."""
    with mpmath.workdps(DPS):
        p_sum, q_sum = sum(map(Fraction, p.tolist())), sum(map(Fraction, q.tolist()))
        big_p = mpmath.mpf(p_sum.numerator) / p_sum.denominator
        big_q = mpmath.mpf(q_sum.numerator) / q_sum.denominator
        total = mpmath.mpf(0)
        for a, b in zip(p.tolist(), q.tolist(), strict=True):
            if a > 0:
                pa, qb = mpmath.mpf(a) / big_p, mpmath.mpf(b) / big_q
                total += pa * mpmath.log(pa / qb)
        return total


def _torch_kl(p, q):
    import torch
    import torch.nn.functional as F

    tp, tq = torch.as_tensor(p), torch.as_tensor(q)
    # input = log q (the model / second argument of D), target = p
    return F.kl_div(torch.log(tq), tp, reduction="none").sum(dim=-1).numpy()


METHODS = {
    "klcourse.kl_divergence(p, q)": lambda p, q: kl_divergence(p, q),
    "textbook np.sum(p * np.log(p / q))": lambda p, q: np.sum(p * np.log(p / q), axis=-1),
    "scipy.special.rel_entr(p, q).sum()": lambda p, q: rel_entr(p, q).sum(axis=-1),
    "torch F.kl_div(log q, p, reduction='sum')": _torch_kl,
}


def _best_time(fn, repeats=3):
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _rel_errors(values, refs):
    errors = []
    for value, ref in zip(values, refs, strict=True):
        if ref == 0:
            errors.append(0.0 if value == 0 else math.inf)
        elif not math.isfinite(value):
            errors.append(math.inf)
        else:
            errors.append(float(abs(mpmath.mpf(float(value)) - ref) / ref))
    return errors


def run() -> list[dict]:
    """One row per method: accuracy on the stress set and time on 1e7 elements."""
    import torch

    torch.set_num_threads(2)
    p, q = stress_set()
    refs = [mp_kl(a, b) for a, b in zip(p, q, strict=True)]
    rng = np.random.default_rng(0)
    big_p, big_q = rng.dirichlet(np.ones(N_LARGE)), rng.dirichlet(np.ones(N_LARGE))
    near_q = big_p * (1.0 + 1e-6 * rng.standard_normal(N_LARGE))
    near_q /= near_q.sum()
    rows = []
    with np.errstate(all="ignore"):
        for name, fn in METHODS.items():
            values = np.asarray(fn(p, q), dtype=float)
            errors = _rel_errors(values, refs)
            rows.append({
                "method": name,
                "worst_rel_err": max(errors),
                "worst_rel_err_delta_ge_1e-9": max(e for e, d in zip(errors, np.repeat(DELTAS, len(SEEDS)),
                                                                      strict=True) if d >= 1e-9),
                "share_negative": float(np.mean(values < 0)),
                "max_abs_self": float(np.max(np.abs(fn(p, p)))),
                "seconds": _best_time(lambda fn=fn: fn(big_p, big_q)),
                "seconds_near": _best_time(lambda fn=fn: fn(big_p, near_q)),
            })
    reference = next(r for r in rows if r["method"].startswith("scipy"))
    for row in rows:
        row["time_vs_rel_entr"] = row["seconds"] / reference["seconds"]
    return rows


def main():
    start = time.perf_counter()
    rows = run()
    print("Discrete KL D(P || Q): stress set q = p (1 + delta z) renormalised, delta = 1e-1 .. 1e-15 and 0")
    print(f"  ({len(DELTAS) * len(SEEDS)} pairs of {N_OUTCOMES} outcomes; reference mpmath {DPS} digits, exact sums);"
          f" time: {N_LARGE:.0e} float64 elements, best of 3")
    header = (f"  {'method':<44}{'worst rel err':>14}{'(delta>=1e-9)':>14}{'share < 0':>11}{'max|D(P||P)|':>14}"
              f"{'time [s]':>10}{'x rel_entr':>11}{'near [s]':>10}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in rows:
        print(f"  {r['method']:<44}{r['worst_rel_err']:>14.2e}{r['worst_rel_err_delta_ge_1e-9']:>14.2e}"
              f"{r['share_negative']:>11.1%}{r['max_abs_self']:>14.1e}{r['seconds']:>10.3f}"
              f"{r['time_vs_rel_entr']:>11.2f}{r['seconds_near']:>10.3f}")
    print(f"\ntotal run time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
