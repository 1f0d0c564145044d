"""Exercises of chapter 4, "Asymmetry: forward and reverse KL" (slug ``asymmetry``).

Every expected value is computed here, lazily, from the problem data below with the reference
functions of :mod:`klcourse` and :mod:`klcourse.asymmetry`; ``tests/test_exercises_asymmetry.py``
recomputes each one by an independent route (scipy, quadrature, hand formulas).

Conventions: forward KL is D(P‖Q) and reverse KL is D(Q‖P), with P the fixed target and Q the
approximation; ``N(mu, sigma^2)`` with sigma^2 the variance; functions take standard deviations.
"""

from __future__ import annotations

import math

import numpy as np

from klcourse.asymmetry import (
    EXAMPLE_MIXTURE,
    factorised_gaussian_fit,
    fit_forward_gaussian,
    fit_reverse_gaussian,
)
from klcourse.divergences import kl_divergence
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Misconception,
    array,
    choice,
    conditions,
    forgot_half,
    function,
    number,
    predicate,
    probability_answer,
    sigma_for_variance,
    swapped,
)
from klcourse.exercises.core import CORRECT, WRONG, Verdict, register
from klcourse.gaussians import kl_normal

# --------------------------------------------------------------------------- problem data
#: ``asymmetry.both-directions``: the pair of distributions on three outcomes.
PAIR_P = (0.7, 0.2, 0.1)
PAIR_Q = (0.2, 0.5, 0.3)

#: ``asymmetry.gaussian-reverse``: target P = N(0, 4) (4 is the *variance*), approximation Q = N(1, 1).
TARGET_MEAN, TARGET_VARIANCE = 0.0, 4.0
APPROX_MEAN, APPROX_VARIANCE = 1.0, 1.0

#: ``asymmetry.wide-or-narrow``: a symmetric two-mode target (weights, means, standard deviations).
WIDE_OR_NARROW_MIXTURE = {"weights": (0.5, 0.5), "means": (-2.0, 2.0), "sds": (0.5, 0.5)}
#: starts of the reverse fit used to find its best optimum for ``asymmetry.wide-or-narrow``
WIDE_OR_NARROW_STARTS = ((-3.0, 1.0), (0.5, 0.5), (0.0, 3.0), (3.0, 1.0))

#: ``asymmetry.which-basin``: a new start (mu, sigma) for the reverse fit on the chapter's example target.
BASIN_START = (-1.0, 3.0)
BASIN_OPTIONS = ("left", "right", "wide")

#: ``asymmetry.mean-field-variance``: a correlated 2-D Gaussian target, standard deviations and correlation.
MEAN_FIELD_SDS = (1.5, 1.0)
MEAN_FIELD_RHO = 0.7


# --------------------------------------------------------------------------- asymmetry.both-directions
def _both_directions() -> np.ndarray:
    return np.array([kl_divergence(PAIR_P, PAIR_Q), kl_divergence(PAIR_Q, PAIR_P)])


register(
    "asymmetry.both-directions",
    title="Both directions of KL for one pair",
    kind="array",
    checker=array(
        _both_directions,
        sigfigs=3,
        unit="nats",
        misconceptions=[
            swapped(lambda: _both_directions()[::-1]),
            Misconception("assumed-symmetric", lambda: np.full(2, _both_directions()[0]),
                          "Both entries are the same number: KL is not symmetric. Compute the second entry "
                          "from its own definition, averaging log(q/p) under Q."),
            Misconception("assumed-symmetric", lambda: np.full(2, _both_directions()[1]),
                          "Both entries are the same number: KL is not symmetric. Compute the first entry "
                          "from its own definition, averaging log(p/q) under P."),
        ],
    ),
)


# --------------------------------------------------------------------------- asymmetry.gaussian-reverse
def _std(variance: float) -> float:
    return math.sqrt(variance)


def _gaussian_reverse() -> float:
    return kl_normal(APPROX_MEAN, _std(APPROX_VARIANCE), TARGET_MEAN, _std(TARGET_VARIANCE))


register(
    "asymmetry.gaussian-reverse",
    title="Reverse KL D(Q‖P) from a Gaussian approximation to a Gaussian target",
    kind="number",
    checker=number(
        _gaussian_reverse,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: kl_normal(TARGET_MEAN, _std(TARGET_VARIANCE), APPROX_MEAN, _std(APPROX_VARIANCE))),
            sigma_for_variance(lambda: kl_normal(APPROX_MEAN, APPROX_VARIANCE, TARGET_MEAN, TARGET_VARIANCE)),
            forgot_half(lambda: _gaussian_reverse() + 0.5),
        ],
    ),
)


# --------------------------------------------------------------------------- asymmetry.fit-forward
def fit_forward_cases(rng: np.random.Generator) -> list[Case]:
    """Randomised and edge cases for ``asymmetry.fit-forward``: (weights, means, sds) of a mixture."""
    cases = [
        Case("a single component N(1.5, 0.7²)", ([1.0], [1.5], [0.7])),
        Case("two components with the same mean (0.3, 0.7 weights, sds 1 and 3)",
             ([0.3, 0.7], [2.0, 2.0], [1.0, 3.0])),
        Case("the symmetric mixture 0.5 N(-2, 0.5²) + 0.5 N(2, 0.5²)", ([0.5, 0.5], [-2.0, 2.0], [0.5, 0.5])),
        Case("a component with weight 0", ([0.0, 1.0], [10.0, -1.0], [2.0, 0.5])),
        Case("an unbalanced mixture 0.9 N(0, 1) + 0.1 N(8, 1)", ([0.9, 0.1], [0.0, 8.0], [1.0, 1.0])),
    ]
    for i, k in enumerate((2, 3, 5, 8)):
        weights = rng.dirichlet(np.ones(k))
        means = rng.normal(0.0, 3.0, size=k)
        sds = np.exp(rng.uniform(-1.0, 1.0, size=k))
        cases.append(Case(f"random mixture {i + 1} with {k} components",
                          (weights.tolist(), means.tolist(), sds.tolist())))
    return cases


def _returns_variance(weights, means, sds):
    mu, sigma = fit_forward_gaussian(weights, means, sds)
    return mu, sigma**2


def _within_only(weights, means, sds):
    weights, means, sds = (np.asarray(a, dtype=float) for a in (weights, means, sds))
    return float(weights @ means), float(np.sqrt(weights @ sds**2))


def _unweighted(weights, means, sds):
    return fit_forward_gaussian(np.full(len(weights), 1.0 / len(weights)), means, sds)


register(
    "asymmetry.fit-forward",
    title="Implement fit_forward_gaussian(weights, means, sds)",
    kind="function",
    checker=function(
        fit_forward_gaussian,
        fit_forward_cases,
        name="fit_forward_gaussian",
        misconceptions=[
            Misconception("sigma-variance", _returns_variance,
                          "The second number looks like the variance σ²; the function should return the "
                          "standard deviation σ of the fitted Gaussian."),
            Misconception("within-variance-only", _within_only,
                          "Your σ² is only the average within-component variance Σ w_k s_k²: the spread of "
                          "the component means around the overall mean belongs to the variance too (law of "
                          "total variance)."),
            Misconception("unweighted", _unweighted,
                          "Your fit ignores the mixture weights: the moments of P are weighted by w_k."),
        ],
    ),
)


# --------------------------------------------------------------------------- lazy choice checker
# --------------------------------------------------------------------------- asymmetry.wide-or-narrow
def _wider_fit() -> str:
    mix = WIDE_OR_NARROW_MIXTURE
    _, sigma_forward = fit_forward_gaussian(**mix)
    best = min(fit_reverse_gaussian(**mix, starts=WIDE_OR_NARROW_STARTS), key=lambda f: f.kl)
    if math.isclose(sigma_forward, best.sigma, rel_tol=1e-3):
        return "equal"
    return "forward" if sigma_forward > best.sigma else "reverse"


def _wide_or_narrow_feedback(correct: str, key: str) -> str:
    if key == "equal":
        return ("The two fits minimise different objectives, so there is no reason for their widths to agree "
                "on a two-mode target. Ask which direction pays for putting little mass where P has a lot.")
    return ("Not this one. Think about which direction takes its expectation under P, and what it costs if Q "
            "is close to zero where P has a mode.")


register(
    "asymmetry.wide-or-narrow",
    title="Predict: which direction gives the wider Gaussian?",
    kind="predict",
    checker=choice(_wider_fit, ("forward", "reverse", "equal"), explanations=_wide_or_narrow_feedback),
)


# --------------------------------------------------------------------------- asymmetry.which-basin
def example_optima() -> dict[str, tuple[float, float]]:
    """The three local minima of D(Q‖P) on the chapter's example target: ``{"left"|"right"|"wide": (mu, sigma)}``.

    Found by the reverse fit from one start inside each basin; "wide" is the Gaussian spanning both modes.
    """
    mix = EXAMPLE_MIXTURE
    starts = [(mix["means"][0], mix["sds"][0]), (mix["means"][1], mix["sds"][1]), (0.0, 4.0)]
    fits = fit_reverse_gaussian(**mix, starts=starts)
    return {name: (f.mu, f.sigma) for name, f in zip(BASIN_OPTIONS, fits, strict=True)}


def _basin_of_start() -> str:
    end = fit_reverse_gaussian(**EXAMPLE_MIXTURE, starts=[BASIN_START])[0]
    distance = {name: math.hypot(end.mu - mu, math.log(end.sigma / sigma))
                for name, (mu, sigma) in example_optima().items()}
    return min(distance, key=distance.get)


def _basin_feedback(correct: str, key: str) -> str:
    return ("Not this one. Find the start on the landscape figure and follow the downhill direction: which "
            "valley of D(Q‖P) is it in? Then run fit_reverse_gaussian from that start to check.")


register(
    "asymmetry.which-basin",
    title="Read the landscape: where does gradient descent from a new start end?",
    kind="choice",
    checker=choice(_basin_of_start, BASIN_OPTIONS, explanations=_basin_feedback),
)


# --------------------------------------------------------------------------- asymmetry.infinite-one-way
def _as_pair(answer) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        raise TypeError("give a pair (p, q) of probability vectors, e.g. answer = ([0.5, 0.5], [0.2, 0.8])")
    p, q = probability_answer(answer[0], "p"), probability_answer(answer[1], "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same length, got {p.size} and {q.size}")
    return p, q


def _infinite_one_way(answer) -> Verdict:
    p, q = _as_pair(answer)  # a TypeError or ValueError becomes an "invalid answer" sentence
    forward, reverse = kl_divergence(p, q), kl_divergence(q, p)
    if math.isfinite(forward) and math.isinf(reverse):
        return Verdict(True, "Correct! Q puts mass on an outcome P rules out, so only D(Q‖P) blows up.", CORRECT)
    if math.isinf(forward) and math.isfinite(reverse):
        return Verdict(False, "The other way round: here D(P‖Q) is infinite and D(Q‖P) finite. Swap p and q.",
                       WRONG, "swapped")
    if math.isinf(forward):
        return Verdict(False, "Both directions are infinite here: each distribution gives mass to an outcome the "
                       "other rules out. Keep the zeros only on one side.", WRONG, "both-infinite")
    return Verdict(False, "Both directions are finite here: a KL divergence is infinite only when its first "
                   "argument gives positive probability to an outcome where the second has probability 0.",
                   WRONG, "both-finite")


register(
    "asymmetry.infinite-one-way",
    title="Find a pair with D(P‖Q) finite but D(Q‖P) infinite",
    kind="counterexample",
    checker=predicate(_infinite_one_way, tolerance=conditions(
        "Accepted: two probability vectors of the same length with D(P‖Q) finite and D(Q‖P) = inf; "
        "exact zeros decide it, no tolerance.")),
)


# --------------------------------------------------------------------------- asymmetry.mean-field-variance
def _mean_field_cov() -> np.ndarray:
    s1, s2 = MEAN_FIELD_SDS
    off = MEAN_FIELD_RHO * s1 * s2
    return np.array([[s1 * s1, off], [off, s2 * s2]])


def _mean_field_variance() -> float:
    return float(factorised_gaussian_fit(np.zeros(2), _mean_field_cov(), "reverse")[1][0] ** 2)


register(
    "asymmetry.mean-field-variance",
    title="The variance of a mean-field (reverse-KL) factor of a correlated Gaussian",
    kind="number",
    checker=number(
        _mean_field_variance,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("marginal-variance", lambda: MEAN_FIELD_SDS[0] ** 2,
                          "That is the marginal variance σ₁², which the forward-KL fit matches. The reverse fit "
                          "takes the variance of z₁ given z₂, which is smaller when the coordinates are "
                          "correlated."),
            Misconception("precision", lambda: 1.0 / _mean_field_variance(),
                          "That looks like the precision Λ₁₁ (the (1,1) entry of the inverse covariance); the "
                          "variance of the factor is its reciprocal."),
            sigma_for_variance(lambda: math.sqrt(_mean_field_variance())),
            sigma_for_variance(lambda: MEAN_FIELD_SDS[0] * (1 - MEAN_FIELD_RHO**2)),
            Misconception("one-minus-rho", lambda: MEAN_FIELD_SDS[0] ** 2 * (1 - MEAN_FIELD_RHO),
                          "The conditional variance shrinks by 1 − ρ², not 1 − ρ."),
            Misconception("other-coordinate", lambda: MEAN_FIELD_SDS[1] ** 2 * (1 - MEAN_FIELD_RHO**2),
                          "That is the variance of the other factor, q₂(z₂): use σ₁ for q₁."),
        ],
    ),
)
