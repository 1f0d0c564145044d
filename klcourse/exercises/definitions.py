"""Exercises of chapter 1, "What KL divergence measures" (``book/01_definitions.ipynb``).

Every expected value is computed here by code (lazily, on first use), never typed. The data each
exercise states in its text are the module constants below; ``tests/test_exercises_definitions.py``
checks that the notebook states the same numbers.

References
----------
Cover, T. M. & Thomas, J. A. (2006). *Elements of Information Theory*, 2nd ed., Wiley, ch. 2 and 5 (convexity,
coding) and 11 (method of types, Sanov's theorem, Stein's lemma).
"""

from __future__ import annotations

import numpy as np

from klcourse.divergences import cross_entropy, kl_divergence
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    array,
    choice,
    conditions,
    function,
    number,
    predicate,
    probability_answer,
    swapped,
    unit_misconceptions,
)
from klcourse.exercises.core import WRONG, Verdict, register
from klcourse.hypothesis import bernoulli_kl, coin_tail_exponent

# --------------------------------------------------------------------------- data stated in the notebook
#: kl-in-bits: true weather climate P and a forecaster's model Q over (sun, cloud, rain)
WEATHER_P = (0.7, 0.2, 0.1)
WEATHER_Q = (0.2, 0.3, 0.5)

#: predict-symmetry: a Bernoulli pair
SYMMETRY_P = (0.2, 0.8)
SYMMETRY_Q = (0.8, 0.2)

#: predict-zero: P puts no mass on the third outcome, Q does
ZERO_P = (0.6, 0.4, 0.0)
ZERO_Q = (0.5, 0.3, 0.2)

#: excess-bits: source P over letters A-D, and the distribution Q = 2**-length that the
#: prefix code A=110, B=0, C=10, D=111 is ideal for
SOURCE_P = (1 / 2, 1 / 4, 1 / 8, 1 / 8)
CODEWORDS = ("110", "0", "10", "111")
N_LETTERS = 1_000_000


def code_distribution(codewords=CODEWORDS) -> np.ndarray:
    """The distribution ``q(x) = 2**(-len(codeword(x)))`` a complete prefix code is ideal for."""
    return 2.0 ** -np.array([len(c) for c in codewords], dtype=float)


# --------------------------------------------------------------------------- 1. a KL in bits by hand
register(
    "definitions.kl-in-bits",
    title="A KL divergence in bits, by hand",
    kind="number",
    checker=number(
        lambda: kl_divergence(WEATHER_P, WEATHER_Q, base=2),
        sigfigs=3,
        unit="bits",
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[swapped(lambda: kl_divergence(WEATHER_Q, WEATHER_P, base=2))],
    ),
)


# --------------------------------------------------------------------------- 2. implement kl(p, q)
def _random_pmf(rng, k: int) -> np.ndarray:
    return rng.dirichlet(np.ones(k))


def _with_zeros(rng, k: int, where) -> np.ndarray:
    v = _random_pmf(rng, k)
    v[list(where)] = 0.0
    return v / v.sum()


def _zero_p_case(rng) -> Case:
    return Case("p with zero entries (0·log(0/q) counts as 0)", (_with_zeros(rng, 6, (1, 4)), _random_pmf(rng, 6)),
                tag="zero-p")


def _mismatch_case(rng) -> Case:
    return Case("q = 0 where p > 0 (the divergence is infinite)", (_random_pmf(rng, 5), _with_zeros(rng, 5, (2,))),
                tag="mismatch")


def _kl_cases(rng) -> list[Case]:
    """Random, identical, zero and large inputs for ``kl(p, q)``."""
    cases = [Case(f"random vectors of length {k}", (_random_pmf(rng, k), _random_pmf(rng, k))) for k in (2, 5, 12)]
    p = _random_pmf(rng, 7)
    cases.append(Case("identical inputs p == q (the divergence is 0)", (p, p.copy())))
    cases.append(_zero_p_case(rng))
    both = _with_zeros(rng, 6, (0,))
    cases.append(Case("p and q both 0 at the same outcome", (both, _with_zeros(rng, 6, (0,))), tag="zero-p"))
    cases.append(_mismatch_case(rng))
    cases.append(Case("a large dimension (10,000 outcomes)", (_random_pmf(rng, 10_000), _random_pmf(rng, 10_000))))
    return cases


def _diagnose_kl(j: Judged) -> Verdict | None:
    """Name the two classic bugs the generic comparison cannot: NaN for p = 0 and an epsilon clip."""
    for _, got, _ in j.output("zero-p"):
        if not isinstance(got, str) and np.isnan(got).any():
            return Verdict(False, "Your kl returns NaN when p has zero entries: 0·log(0/q) must count as 0, so sum "
                           "only over the outcomes with p > 0.", WRONG, "zero-p-nan")
    for _, got, _ in j.output("mismatch"):
        if not isinstance(got, str) and got.size == 1 and np.isfinite(got).all():
            return Verdict(False, "Your kl returns a finite number when q = 0 where p > 0. The divergence is +inf "
                           "there; replacing q = 0 by a small epsilon hides it and makes the result depend on the "
                           "epsilon you picked.", WRONG, "clipped-q")
    return None


def _implement_kl_checker():
    return function(
        kl_divergence,
        _kl_cases,
        misconceptions=[swapped(lambda p, q: kl_divergence(q, p)), *unit_misconceptions(kl_divergence, "nats")],
        name="kl",
        diagnose=_diagnose_kl,
    )


register("definitions.implement-kl", title="Implement kl(p, q)", kind="function", checker=_implement_kl_checker())


# --------------------------------------------------------------------------- 3-4. predict, then verify
def _which_is_larger(p, q) -> str:
    forward, reverse = kl_divergence(p, q), kl_divergence(q, p)
    if np.isclose(forward, reverse, rtol=1e-12, atol=0.0):
        return "equal"
    return "forward larger" if forward > reverse else "reverse larger"


_SYMMETRY_OPTIONS = ("equal", "forward larger", "reverse larger")
_SYMMETRY_HINT = ("Verify with kl_divergence before answering: KL is not symmetric in general, but that does not "
                  "decide this particular pair.")


register("definitions.predict-symmetry", title="Is D(P‖Q) = D(Q‖P) for this pair?", kind="predict",
         checker=choice(lambda: _which_is_larger(SYMMETRY_P, SYMMETRY_Q), _SYMMETRY_OPTIONS,
                        explanations=dict.fromkeys(_SYMMETRY_OPTIONS, _SYMMETRY_HINT)))


def _which_is_infinite(p, q) -> str:
    forward, reverse = np.isinf(kl_divergence(p, q)), np.isinf(kl_divergence(q, p))
    return {(True, True): "both", (True, False): "forward", (False, True): "reverse"}.get(
        (bool(forward), bool(reverse)), "neither")


_ZERO_EXPLANATIONS = {
    "forward": "D(P‖Q) averages over P, and P gives the outcome where its own mass is 0 weight 0 "
               "(0·log 0 = 0). Ask instead: does one distribution put mass where the other has none?",
    "both": "Only one of the two averages puts positive weight on an outcome where the other distribution is 0.",
    "neither": "A divergence D(A‖B) is infinite as soon as A puts mass on an outcome where B has none: "
               "check the third outcome in both directions.",
    "reverse": "D(Q‖P) averages over Q: look at the outcome where p = 0 and ask what weight Q gives it.",
}


register("definitions.predict-zero", title="What happens when q has a zero?", kind="predict",
         checker=choice(lambda: _which_is_infinite(ZERO_P, ZERO_Q), ("forward", "reverse", "both", "neither"),
                        explanations=_ZERO_EXPLANATIONS))


# --------------------------------------------------------------------------- 5. triangle counterexample
def _three_distributions(answer) -> list[np.ndarray]:
    if isinstance(answer, (str, bytes, dict)) or not hasattr(answer, "__len__"):
        raise TypeError("give a tuple (p, q, r) of three probability vectors")
    if len(answer) != 3:
        raise ValueError(f"give exactly three distributions (p, q, r), got {len(answer)}")
    dists = [probability_answer(d, name) for d, name in zip(answer, "pqr", strict=True)]
    for d, name in zip(dists, "pqr", strict=True):
        if d.size < 3:
            raise ValueError(f"{name} must be a vector over at least three outcomes, got shape {d.shape}")
        if np.min(d) <= 0:
            raise ValueError(f"{name} has a zero entry; the exercise asks for strictly positive entries")
    if len({d.size for d in dists}) != 1:
        raise ValueError("p, q and r must be defined on the same outcomes (equal lengths)")
    return dists


def _triangle_test(answer) -> tuple[bool, str]:
    p, q, r = _three_distributions(answer)
    direct, detour = kl_divergence(p, r), kl_divergence(p, q) + kl_divergence(q, r)
    if direct > detour * (1 + 1e-9) + 1e-12:
        return True, (f"Correct! D(P‖R) = {direct:.4g} nats exceeds D(P‖Q) + D(Q‖R) = {detour:.4g} nats, so KL "
                      "violates the triangle inequality: it is not a metric.")
    return False, (f"Not a counterexample: D(P‖R) = {direct:.4g} nats is not larger than "
                   f"D(P‖Q) + D(Q‖R) = {detour:.4g} nats.")


register("definitions.triangle", title="A counterexample to the triangle inequality", kind="counterexample",
         checker=predicate(_triangle_test, tolerance=conditions(
             "Accepted: three strictly positive distributions on the same outcomes (at least three) with "
             "D(P‖R) > D(P‖Q) + D(Q‖R), by more than a relative 1e-9 (rounding).")))


# --------------------------------------------------------------------------- 6. interpret the Gibbs figure
register(
    "definitions.gibbs-figure",
    title="Read Gibbs' inequality off its figure",
    kind="choice",
    checker=choice("forward", ("forward", "reverse", "cross-entropy", "entropy"), explanations={
        "reverse": "The weights are p_i and the dots sit at q_i/p_i: which distribution does the average run over?",
        "cross-entropy": "Every gap is ≥ 0 and all of them vanish when P = Q. Is H(P, Q) zero when P = Q?",
        "entropy": "Every gap is ≥ 0 and all of them vanish when P = Q, whatever P is. Does H(P) vanish then?",
    }),
)


# --------------------------------------------------------------------------- 7. excess code length
def _excess_bits_checker():
    q = code_distribution()
    return number(
        lambda: N_LETTERS * kl_divergence(SOURCE_P, q, base=2),
        sigfigs=3,
        unit="bits",
        negative="Not quite: your answer is negative, but the question asks how many bits *longer* the message is "
                 "than with the best code for P, and no code is shorter than that one on average.",
        misconceptions=[
            Misconception("per-symbol", lambda: kl_divergence(SOURCE_P, q, base=2),
                          f"That is the excess per letter; the question asks for the total over {N_LETTERS:,} "
                          "letters."),
            swapped(lambda: N_LETTERS * kl_divergence(q, SOURCE_P, base=2)),
            Misconception("total-length", lambda: N_LETTERS * cross_entropy(SOURCE_P, q, base=2),
                          "That is the whole length of the encoded message; the question asks how much longer it "
                          "is than with the best code for P."),
        ],
    )


register("definitions.excess-bits", title="Extra bits of a code built for the wrong distribution", kind="number",
         checker=_excess_bits_checker())

# --------------------------------------------------------------------------- 8. mixing two models (convexity)
#: mixture-hedge: the data P and two models; the hedge is the half-half mixture of the models
HEDGE_P = (0.5, 0.3, 0.2)
HEDGE_Q1 = (0.7, 0.2, 0.1)
HEDGE_Q2 = (0.2, 0.3, 0.5)


def hedge_mixture() -> np.ndarray:
    """The model ½Q1 + ½Q2 of the mixture-hedge exercise."""
    return 0.5 * np.asarray(HEDGE_Q1) + 0.5 * np.asarray(HEDGE_Q2)


def _hedge_checker():
    return number(
        lambda: kl_divergence(HEDGE_P, hedge_mixture()),
        sigfigs=3,
        unit="nats",
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            Misconception("average-of-divergences",
                          lambda: 0.5 * kl_divergence(HEDGE_P, HEDGE_Q1) + 0.5 * kl_divergence(HEDGE_P, HEDGE_Q2),
                          "That is ½D(P‖Q1) + ½D(P‖Q2), the upper bound that convexity gives. The exercise asks for "
                          "the divergence of the mixture itself: average the two models first, then take one "
                          "divergence."),
            swapped(lambda: kl_divergence(hedge_mixture(), HEDGE_P)),
        ],
    )


register("definitions.mixture-hedge", title="Hedging between two models", kind="number",
         checker=_hedge_checker())


# --------------------------------------------------------------------------- 9. an atom against a density
#: atom: P = ATOM_WEIGHT·δ_0 + (1 − ATOM_WEIGHT)·N(0, 1) against Q = N(0, 1); the answer is (D(P‖Q), D(Q‖P))
ATOM_WEIGHT = 0.5


def _atom_expected() -> np.ndarray:
    # P has an atom that Q gives probability 0: P is not absolutely continuous with respect to Q.
    # Q << P with dQ/dP = 1 / (1 - w) off the atom, so D(Q‖P) = E_Q[log dQ/dP] = -log(1 - w).
    return np.array([np.inf, -np.log1p(-ATOM_WEIGHT)])


def _atom_checker():
    both_directions = -np.log1p(-ATOM_WEIGHT)
    return array(
        _atom_expected,
        sigfigs=3,
        unit="nats",
        misconceptions=[
            Misconception("swapped", lambda: _atom_expected()[::-1],
                          "Those are the two divergences in the other order: the first entry is D(P‖Q), with P the "
                          "distribution that has the atom."),
            Misconception("forgot-absolute-continuity", np.array([both_directions, both_directions]),
                          "D(P‖Q) is not finite here: P puts probability 1/2 on the single point 0, which Q gives "
                          "probability 0, so P is not absolutely continuous with respect to Q and D(P‖Q) = inf."),
            Misconception("both-infinite", np.array([np.inf, np.inf]),
                          "D(Q‖P) is finite: every event that P gives probability 0 avoids the point 0 and so is "
                          "also null for N(0, 1) — Q is absolutely continuous with respect to P. Compute dQ/dP "
                          "away from 0."),
        ],
    )


register("definitions.atom", title="A point mass against a density", kind="array", checker=_atom_checker())


# --------------------------------------------------------------------------- 10. Stein's exponent
#: stein-exponent: the hypothesis P whose false-alarm probability is held fixed, and the alternative Q (coins,
#: probabilities of heads)
STEIN_P = 0.05
STEIN_Q = 0.5


def _stein_checker():
    return number(
        lambda: bernoulli_kl(STEIN_P, STEIN_Q),
        sigfigs=3,
        unit="nats",
        negative="An exponent of decay is positive: the error probability shrinks as n grows.",
        misconceptions=[
            Misconception("swapped", lambda: bernoulli_kl(STEIN_Q, STEIN_P),
                          "That is D(Q‖P). In Stein's lemma the error that decays, Q(accept P), has the exponent "
                          "D(P‖Q): the expectation is under P, the hypothesis whose error is held fixed."),
        ],
    )


register("definitions.stein-exponent", title="The exponent in Stein's lemma", kind="number",
         checker=_stein_checker())


# --------------------------------------------------------------------------- 11. Sanov's exponent
#: sanov-exponent: a coin with probability SANOV_P of heads; the rare event "at least SANOV_T of the tosses are
#: heads"
SANOV_P = 0.2
SANOV_T = 0.5


def _sanov_checker():
    p, t = SANOV_P, SANOV_T
    return number(
        lambda: coin_tail_exponent(p, t),
        sigfigs=3,
        unit="nats",
        negative="An exponent of decay is positive: the probability of the rare event shrinks as n grows.",
        misconceptions=[
            Misconception("swapped", lambda: bernoulli_kl(p, t),
                          "That is D(Bern(p)‖Bern(t)), the divergence the other way round. In Sanov's theorem the "
                          "true distribution is the second argument: D(T‖P), minimised over the rare types T."),
            Misconception("gaussian-approximation", lambda: (t - p) ** 2 / (2 * p * (1 - p)),
                          "That is the exponent of the Gaussian (central limit) approximation, (t − p)²/(2p(1 − p)). "
                          "It is right only for thresholds close to p; far in the tail the exact exponent is a KL "
                          "divergence."),
        ],
    )


register("definitions.sanov-exponent", title="How rare is a run of luck? Sanov's exponent", kind="number",
         checker=_sanov_checker())

__all__ = ["ATOM_WEIGHT", "CODEWORDS", "HEDGE_P", "HEDGE_Q1", "HEDGE_Q2", "N_LETTERS", "SANOV_P", "SANOV_T",
           "SOURCE_P", "STEIN_P", "STEIN_Q", "SYMMETRY_P", "SYMMETRY_Q", "WEATHER_P", "WEATHER_Q", "ZERO_P",
           "ZERO_Q", "code_distribution", "hedge_mixture"]
