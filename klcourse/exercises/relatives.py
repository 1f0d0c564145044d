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



# =========================================================================== issue 13: chapter 2 in depth
#: ``relatives.tv-bound``: a pair with a large KL, where Bretagnolle–Huber beats Pinsker.
TV_BOUND_P = (0.7, 0.2, 0.1)
TV_BOUND_Q = (0.02, 0.18, 0.8)

#: ``relatives.renyi-two``: the pair whose Rényi divergence of order 2 is asked for.
RENYI_P = (0.5, 0.3, 0.2)
RENYI_Q = (0.25, 0.25, 0.5)

#: ``relatives.dv-bound``: samples x ~ P = N(0, 1) and y ~ Q = N(1, 1), both drawn from one generator seeded with
#: DV_SEED (first the P sample, then the Q sample), and the critic T(x) = DV_CRITIC_A + DV_CRITIC_B·x.
DV_SEED, DV_N = 2026, 500
DV_CRITIC_A, DV_CRITIC_B = 0.5, -1.0

#: ``relatives.cmi-xor``: X, Y independent fair bits, Z = X xor Y xor N with N ~ Bernoulli(CMI_FLIP).
CMI_FLIP = 0.1


# --------------------------------------------------------------------------- relatives.tv-bound
def _tv_kl(reverse=False):
    from klcourse import kl_divergence

    p, q = np.array(TV_BOUND_P), np.array(TV_BOUND_Q)
    return kl_divergence(q, p) if reverse else kl_divergence(p, q)


def _tv_best_bound():
    from klcourse.divergences import bretagnolle_huber_bound, pinsker_bound

    kl = _tv_kl()
    return min(bretagnolle_huber_bound(kl), pinsker_bound(kl))


register(
    "relatives.tv-bound",
    title="The best upper bound on TV from the KL: Pinsker or Bretagnolle–Huber?",
    kind="number",
    checker=number(
        _tv_best_bound,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("pinsker", lambda: math.sqrt(_tv_kl() / 2),
                          "That is Pinsker's bound √(D/2). At this KL (above about 1.59 nats) the "
                          "Bretagnolle–Huber bound √(1 − e^(−D)) is the smaller, hence better, one — Pinsker's "
                          "value is even above 1, which says nothing about a TV."),
            Misconception("trivial-one", 1.0,
                          "1 is the bound every TV satisfies (Pinsker's bound capped at 1). The exercise asks for "
                          "the smaller of the two bounds computed from the KL."),
            Misconception("forgot-sqrt", lambda: -math.expm1(-_tv_kl()),
                          "You left out the square root: Bretagnolle–Huber bounds TV by √(1 − e^(−D)), not by "
                          "1 − e^(−D)."),
            Misconception("kl-in-bits", lambda: math.sqrt(-math.expm1(-_tv_kl() / math.log(2))),
                          "You used the KL in bits. Both bounds need D(P‖Q) in nats (natural log)."),
            Misconception("reversed", lambda: math.sqrt(-math.expm1(-_tv_kl(reverse=True))),
                          "You used D(Q‖P), the KL with the arguments swapped. TV is symmetric, so either KL gives "
                          "a valid bound, but the exercise asks for the one from D(P‖Q)."),
            Misconception("tv-itself", lambda: 0.5 * float(np.abs(np.array(TV_BOUND_P) - TV_BOUND_Q).sum()),
                          "That is the total variation itself. The exercise asks for the bound a reader who knows "
                          "only the KL can give."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.renyi-two
def _renyi(alpha, reverse=False):
    from klcourse.divergences import renyi_divergence

    p, q = np.array(RENYI_P), np.array(RENYI_Q)
    return renyi_divergence(q, p, alpha) if reverse else renyi_divergence(p, q, alpha)


def _renyi_chi2():
    p, q = np.array(RENYI_P), np.array(RENYI_Q)
    return float(np.sum((p - q) ** 2 / q))


register(
    "relatives.renyi-two",
    title="The Rényi divergence of order 2",
    kind="number",
    checker=number(
        lambda: _renyi(2.0),
        sigfigs=3,
        unit="nats",
        negative="A Rényi divergence of positive order is never negative: Σ p²/q ≥ 1 (Cauchy–Schwarz), so its "
                 "log is ≥ 0. Check that you divide by q, not by p.",
        misconceptions=[
            Misconception("chi2", _renyi_chi2,
                          "That is χ²(P‖Q) itself. The Rényi divergence of order 2 is the logarithm of 1 + χ²: "
                          "D₂ = log(1 + χ²), which is smaller."),
            Misconception("forgot-log", lambda: 1.0 + _renyi_chi2(),
                          "That is the sum Σ p²/q = 1 + χ² before the logarithm: D₂ = log Σ p²/q."),
            Misconception("kl", lambda: _renyi(1.0),
                          "That is the KL divergence, the order α = 1. Order 2 weighs the likelihood ratio more "
                          "heavily and is larger."),
            Misconception("order-half", lambda: _renyi(0.5),
                          "That is the order ½, −2 log Σ √(pq). Order 2 uses Σ p²/q."),
            Misconception("swapped", lambda: _renyi(2.0, reverse=True),
                          "That is D₂(Q‖P), with the arguments swapped: D₂(P‖Q) = log Σ p²/q divides by q."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.dv-bound
def dv_exercise_data() -> tuple[np.ndarray, np.ndarray]:
    """The critic's values (T(x) for x ~ P, T(y) for y ~ Q) of ``relatives.dv-bound``."""
    rng = np.random.default_rng(DV_SEED)
    x_p = rng.normal(0.0, 1.0, DV_N)
    x_q = rng.normal(1.0, 1.0, DV_N)
    return DV_CRITIC_A + DV_CRITIC_B * x_p, DV_CRITIC_A + DV_CRITIC_B * x_q


def _log_mean_exp(t):
    top = float(np.max(t))
    return top + math.log(float(np.mean(np.exp(t - top))))


def _dv_variant(name):
    t_p, t_q = dv_exercise_data()
    return {
        "right": float(np.mean(t_p)) - _log_mean_exp(t_q),
        "wrong-sample-set": float(np.mean(t_p)) - _log_mean_exp(t_p),
        "samples-swapped": float(np.mean(t_q)) - _log_mean_exp(t_p),
        "nwj": float(np.mean(t_p) - np.mean(np.exp(t_q - 1.0))),
        "forgot-log": float(np.mean(t_p) - np.mean(np.exp(t_q))),
        "mean-of-log": float(np.mean(t_p) - np.mean(t_q)),
    }[name]


register(
    "relatives.dv-bound",
    title="Evaluate the Donsker–Varadhan bound from samples",
    kind="number",
    checker=number(
        lambda: _dv_variant("right"),
        unit="nats",
        misconceptions=[
            Misconception("wrong-sample-set", lambda: _dv_variant("wrong-sample-set"),
                          "You took both expectations over the samples from P. The second term, log E[e^T], is "
                          "an expectation under Q: use the critic's values on the samples from Q there (with P in "
                          "both places, Jensen's inequality makes the result ≤ 0 for every critic)."),
            Misconception("samples-swapped", lambda: _dv_variant("samples-swapped"),
                          "You swapped the two sample sets: E[T] is under P (the first argument of D(P‖Q)), "
                          "log E[e^T] under Q."),
            Misconception("nwj", lambda: _dv_variant("nwj"),
                          "That is the NWJ bound E_P[T] − E_Q[e^(T−1)], another valid lower bound — the "
                          "exercise asks for the Donsker–Varadhan one, E_P[T] − log E_Q[e^T]."),
            Misconception("forgot-log", lambda: _dv_variant("forgot-log"),
                          "You subtracted the mean of e^T itself; the Donsker–Varadhan bound subtracts its "
                          "logarithm, log E_Q[e^T]."),
            Misconception("mean-of-log", lambda: _dv_variant("mean-of-log"),
                          "You subtracted E_Q[T], the mean of the critic — the log and the mean of e^T are not "
                          "interchangeable (log E[e^T] ≥ E[T] by Jensen). Compute log of the mean of e^T."),
        ],
    ),
)


# --------------------------------------------------------------------------- relatives.cmi-xor
def noisy_xor_joint() -> np.ndarray:
    """The joint table p(x, y, z) of ``relatives.cmi-xor`` (axes x, y, z)."""
    joint = np.zeros((2, 2, 2))
    for x in range(2):
        for y in range(2):
            joint[x, y, x ^ y] += 0.25 * (1 - CMI_FLIP)
            joint[x, y, 1 - (x ^ y)] += 0.25 * CMI_FLIP
    return joint


def _cmi_bits():
    from klcourse.divergences import conditional_mutual_information

    return conditional_mutual_information(noisy_xor_joint(), base=2)


def _noise_entropy_bits():
    from klcourse import entropy

    return entropy([CMI_FLIP, 1 - CMI_FLIP], base=2)


register(
    "relatives.cmi-xor",
    title="Conditioning can create dependence: I(X; Y | Z) for a noisy XOR, in bits",
    kind="number",
    checker=number(
        _cmi_bits,
        sigfigs=3,
        unit="bits",
        misconceptions=[
            Misconception("unconditional", 0.0,
                          "That is I(X; Y) (and also I(X; Z)): X and Y are independent, but once Z is known, "
                          "X tells you a lot about Y. The question asks for I(X; Y | Z)."),
            Misconception("noise-entropy", _noise_entropy_bits,
                          "That is H(N), the entropy of the flip — what is left unknown about Y once X and Z are "
                          "known, H(Y | X, Z). The conditional mutual information is H(Y | Z) − H(Y | X, Z)."),
            Misconception("one-bit", 1.0,
                          "One bit would be the noiseless XOR. With flips Z no longer determines Y from X: "
                          "subtract H(Y | X, Z)."),
        ],
    ),
)
