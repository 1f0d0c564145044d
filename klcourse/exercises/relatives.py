"""Exercises of chapter 2, "KL's relatives" (slug ``relatives``).

Every expected value is computed here, lazily, from the problem data below; the tests in
``tests/test_exercises_relatives.py`` recompute each one by an independent route.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    choice,
    conditions,
    function,
    number,
    predicate,
    probability_answer,
)
from klcourse.exercises.core import WRONG, Verdict, register

# --------------------------------------------------------------------------- problem data
#: Petal-width bin edges (cm) of ``relatives.mi-bits``. Iris widths are recorded to 0.1 cm, so edges at
#: x.x5 never coincide with a measurement and every binning route gives the same table.
PETAL_WIDTH_EDGES = (0.05, 0.85, 1.35, 1.75, 2.55)

#: The two joint tables of ``relatives.chain-rule-term`` (rows: x, columns: y).
CHAIN_P = ((0.30, 0.15, 0.15), (0.05, 0.10, 0.25))
CHAIN_Q = ((0.10, 0.20, 0.10), (0.20, 0.20, 0.20))

#: ``relatives.js-overlap``: P uniform on {0, ..., 9}, Q uniform on {4, ..., 13}, support {0, ..., 13}.
JS_WIDTH, JS_SHIFT = 10, 4


def iris_width_joint() -> np.ndarray:
    """Joint distribution of (species, petal-width bin) in scikit-learn's bundled iris data (3 × 4)."""
    counts = np.array(_iris_width_counts())
    return counts / counts.sum()


@cache
def _iris_width_counts() -> tuple:
    from sklearn.datasets import load_iris

    iris = load_iris()
    bins = np.digitize(iris.data[:, 3], PETAL_WIDTH_EDGES[1:-1])
    counts = np.zeros((3, len(PETAL_WIDTH_EDGES) - 1))
    np.add.at(counts, (iris.target, bins), 1.0)
    return tuple(map(tuple, counts))


def js_overlap_pair() -> tuple[np.ndarray, np.ndarray]:
    """The two uniform "boxes" of ``relatives.js-overlap``."""
    p, q = np.zeros(JS_WIDTH + JS_SHIFT), np.zeros(JS_WIDTH + JS_SHIFT)
    p[:JS_WIDTH] = 1 / JS_WIDTH
    q[JS_SHIFT:] = 1 / JS_WIDTH
    return p, q


def _chain_tables():
    p, q = np.array(CHAIN_P), np.array(CHAIN_Q)
    return p, q, p.sum(axis=1), q.sum(axis=1)


def _conditional_kls(first, second):
    """D(first_{Y|x} ‖ second_{Y|x}) for every row x of two joint tables."""
    from klcourse import kl_divergence

    return kl_divergence(first / first.sum(axis=1, keepdims=True), second / second.sum(axis=1, keepdims=True))


# --------------------------------------------------------------------------- relatives.nll-offset
register(
    "relatives.nll-offset",
    title="Read the gap between the NLL and the KL curves",
    kind="choice",
    checker=choice(
        "data-conditional-entropy",
        ["data-conditional-entropy", "model-entropy", "minimum-kl", "ln3"],
        explanations={
            "model-entropy": "The model's entropy changes with the parameters, so a gap equal to it could not "
                             "be the same at every point of the curve. The gap depends on the data only.",
            "minimum-kl": "The smallest KL is the height of the lower curve at its minimum, not the distance "
                          "between the curves (which is the same everywhere).",
            "ln3": "ln 3 is the entropy of a uniform guess over the three species; the gap is a property of the "
                   "empirical distribution of (sepal-length bin, species).",
        },
    ),
)


# --------------------------------------------------------------------------- relatives.mi-bits
def _mi_bits():
    from klcourse import mutual_information

    return mutual_information(iris_width_joint(), base=2)


def _mi_reversed_bits():
    from klcourse import kl_divergence

    joint = iris_width_joint()
    product = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    return kl_divergence(product.ravel(), joint.ravel(), base=2)


def _species_entropy_bits():
    from klcourse import entropy

    return entropy(iris_width_joint().sum(axis=1), base=2)


register(
    "relatives.mi-bits",
    title="Mutual information of species and petal width, in bits",
    kind="number",
    checker=number(
        _mi_bits,
        unit="bits",
        misconceptions=[
            Misconception("reversed", _mi_reversed_bits,
                          "That is the KL the other way round, D(p(x)p(y) ‖ p(x, y)). Mutual information "
                          "averages under the joint: D(p(x, y) ‖ p(x)p(y))."),
            Misconception("entropy", _species_entropy_bits,
                          "That is H(species), the uncertainty before seeing the petal width. Mutual "
                          "information is how much of it the petal width removes: H(Y) − H(Y | X)."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.mi-from-joint
def _reference_mi(joint):
    from klcourse import mutual_information

    return mutual_information(joint)


def _mi_bits_fn(joint):
    return _reference_mi(joint) / math.log(2)


def _mi_reversed_fn(joint):
    from klcourse import kl_divergence

    joint = np.asarray(joint, dtype=float)
    product = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    return kl_divergence(product.ravel(), joint.ravel())


def _random_joint(rng, shape, zeros=0):
    table = rng.dirichlet(np.ones(shape[0] * shape[1])).reshape(shape)
    if zeros:
        table.ravel()[rng.choice(table.size, size=zeros, replace=False)] = 0.0
        table /= table.sum()
    return table


def _mi_cases(rng):
    px, py = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(5))
    return [
        Case("a random 3 × 4 joint table", (_random_joint(rng, (3, 4)),)),
        Case("a random 2 × 2 joint table", (_random_joint(rng, (2, 2)),)),
        Case("a 2 × 2 table with zero cells, [[0.5, 0], [0, 0.5]]", (np.array([[0.5, 0.0], [0.0, 0.5]]),),
             tag="zero-cells"),
        Case("a random 5 × 3 table with some zero cells", (_random_joint(rng, (5, 3), zeros=4),), tag="zero-cells"),
        Case("a table of independent variables, p(x)p(y)", (np.outer(px, py),)),
        Case("a diagonal table (Y a copy of X)", (np.diag(rng.dirichlet(np.ones(4))),)),
        Case("a 1 × 4 table (X constant)", (rng.dirichlet(np.ones(4))[None, :],)),
        Case("a random 8 × 6 table with zero cells", (_random_joint(rng, (8, 6), zeros=10),), tag="zero-cells"),
    ]


def _zero_cells(j: Judged) -> Verdict | None:
    """Explain NaN from 0 · log 0 before the generic function checker reports a NaN error."""
    for _, got, _ in j.output("zero-cells"):
        if not isinstance(got, str) and np.isnan(got).any():
            return Verdict(False, "Your function returns NaN when the table has zero cells: cells with "
                           "p(x, y) = 0 contribute 0 (the limit of t log t as t → 0), so leave them out "
                           "of the sum instead of computing 0 · log 0.", WRONG, "zero-cells")
    return None


register(
    "relatives.mi-from-joint",
    title="Implement mutual_information_from_joint",
    kind="function",
    checker=function(
        _reference_mi,
        _mi_cases,
        name="mutual_information_from_joint",
        diagnose=_zero_cells,
        misconceptions=[
            Misconception("bits", _mi_bits_fn, "Your function returns bits; the exercise asks for nats "
                          "(natural log). Bits = nats / ln 2."),
            Misconception("reversed", _mi_reversed_fn, "Your function computes D(p(x)p(y) ‖ p(x, y)), the "
                          "KL the other way round; mutual information is D(p(x, y) ‖ p(x)p(y))."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.js-overlap
def _js_bits():
    from klcourse import js_divergence

    return js_divergence(*js_overlap_pair(), base=2)


register(
    "relatives.js-overlap",
    title="Jensen–Shannon divergence of two overlapping boxes, in bits",
    kind="number",
    checker=number(
        _js_bits,
        sigfigs=3,
        unit="bits",
        misconceptions=[
            Misconception("js-distance", lambda: math.sqrt(_js_bits()),
                          "That is the Jensen–Shannon *distance*, the square root of the divergence (what "
                          "scipy.spatial.distance.jensenshannon(p, q, base=2) returns). Square it."),
            Misconception("scipy-jensenshannon", lambda: math.sqrt(_js_bits() * math.log(2)),
                          "That is scipy.spatial.distance.jensenshannon(p, q) with its defaults: the "
                          "Jensen–Shannon *distance*, the square root of the divergence, in nats. Square it, "
                          "and convert to bits (divide by ln 2) — or pass base=2 and square."),
            Misconception("forgot-half", lambda: 2 * _js_bits(),
                          "Twice the answer: JS is the *average* ½ D(P‖M) + ½ D(Q‖M), not the sum."),
            Misconception("infinite", math.inf,
                          "JS is never infinite: the mixture M = (P + Q)/2 is positive wherever P or Q is, so "
                          "both KL terms are finite (each is at most ln 2)."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.chain-rule-term
def _chain_term():
    p, q, px, _ = _chain_tables()
    return float(np.sum(px * _conditional_kls(p, q)))


def _chain_unweighted_sum():
    p, q, _, _ = _chain_tables()
    return float(np.sum(_conditional_kls(p, q)))


def _chain_unweighted_mean():
    p, q, _, _ = _chain_tables()
    return float(np.mean(_conditional_kls(p, q)))


def _chain_weighted_by_q():
    p, q, _, qx = _chain_tables()
    return float(np.sum(qx * _conditional_kls(p, q)))


def _chain_swapped():
    p, q, _, qx = _chain_tables()
    return float(np.sum(qx * _conditional_kls(q, p)))


def _chain_joint():
    from klcourse import kl_divergence

    p, q, _, _ = _chain_tables()
    return kl_divergence(p.ravel(), q.ravel())


register(
    "relatives.chain-rule-term",
    title="The conditional term of the chain rule",
    kind="number",
    checker=number(
        _chain_term,
        sigfigs=3,
        unit="nats",
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            Misconception("unweighted-sum", _chain_unweighted_sum,
                          "You added the conditional KLs of the rows without weights. The chain-rule term is "
                          "an expectation: weight row x by p(x), the marginal of the first argument P."),
            Misconception("unweighted-mean", _chain_unweighted_mean,
                          "You averaged the rows with equal weights. Weight row x by p(x), the marginal of "
                          "the first argument P."),
            Misconception("weighted-by-q", _chain_weighted_by_q,
                          "Right conditional KLs, wrong weights: the expectation is under P_X (the first "
                          "argument), not Q_X."),
            Misconception("swapped", _chain_swapped,
                          "That is the chain-rule term of D(Q‖P), with the arguments swapped: here P comes "
                          "first, so compare P(Y|x) to Q(Y|x) and weight by p(x)."),
            Misconception("joint", _chain_joint,
                          "That is the whole joint divergence D(P_XY ‖ Q_XY); the exercise asks only for the "
                          "conditional term, i.e. without D(P_X ‖ Q_X)."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.dpi-predict
register(
    "relatives.dpi-predict",
    title="Which processing can increase KL?",
    kind="predict",
    checker=choice(
        "different-channels",
        ["same-channel", "merge-outcomes", "different-channels", "none"],
        explanations={
            "same-channel": "Passing P and Q through the *same* row-stochastic matrix never increases any "
                            "f-divergence: that is the data-processing inequality.",
            "merge-outcomes": "Merging outcomes is a deterministic channel (each row of its matrix is a "
                              "one-hot vector) applied to both, so the data-processing inequality covers it.",
            "none": "The inequality needs one fixed channel for both distributions. Try feeding P and Q "
                    "through two different channels.",
        },
    ),
)


# --------------------------------------------------------------------------- relatives.reverse-pinsker
TV_MAX, KL_MIN = 0.1, 1.0


#: rounding slack at the two thresholds (float32 rounding): a pair with TV = 0.1 in exact arithmetic passes
THRESHOLD_RTOL = 1e-6


def _reverse_pinsker(answer):
    from klcourse import kl_divergence

    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        raise TypeError("answer with a pair (p, q) of probability vectors")
    p, q = probability_answer(answer[0], "p"), probability_answer(answer[1], "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q have different lengths ({p.size} and {q.size})")
    tv = 0.5 * float(np.abs(p - q).sum())
    kl = kl_divergence(p, q)
    if tv > TV_MAX * (1 + THRESHOLD_RTOL):
        return False, f"Your pair has TV = {tv:.3g}, above {TV_MAX}: move the two vectors closer together."
    if kl < KL_MIN * (1 - THRESHOLD_RTOL):
        return False, (f"Your pair has TV = {tv:.3g} but D(P‖Q) = {kl:.3g} nats, below {KL_MIN}: make Q "
                       "(nearly) vanish where P still has a little mass.")
    bound = "no finite C" if math.isinf(kl) else f"C ≥ {kl / tv**2:.3g}"
    return True, (f"Correct: TV = {tv:.3g} yet D(P‖Q) = {kl:.3g} nats, so a bound KL ≤ C·TV² would need "
                  f"{bound}. Letting q shrink further where p has mass sends the KL to infinity at "
                  "almost the same TV, so no constant works: Pinsker's inequality only goes the other way.")


register(
    "relatives.reverse-pinsker",
    title="No reverse Pinsker inequality",
    kind="counterexample",
    checker=predicate(_reverse_pinsker, tolerance=conditions(
        f"Accepted: two probability vectors (lists, arrays or tensors, float32 too) with TV ≤ {TV_MAX} and "
        f"D(P‖Q) ≥ {KL_MIN} nat, computed in float64; a pair exactly on a threshold passes (relative slack "
        f"{THRESHOLD_RTOL:g} for rounding).")),
)

