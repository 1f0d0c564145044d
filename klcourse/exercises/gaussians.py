"""Exercises of chapter 3, "KL between Gaussians, derived" (slug ``gaussians``).

Every expected value is computed here, lazily, from the problem data below with the
reference functions of :mod:`klcourse.gaussians`; ``tests/test_exercises_gaussians.py``
recomputes each one by an independent route (quadrature, hand formulas, finite differences).

Convention throughout: ``N(mu, sigma^2)`` with sigma^2 the variance; the functions take
standard deviations.  The exponential-family exercises (Poisson, Bernoulli, gamma) use
:mod:`klcourse.expfamily`; the gamma is parametrised by shape and **rate**.
"""

from __future__ import annotations

import math

import numpy as np

from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    _from_torch,
    choice,
    conditions,
    forgot_half,
    function,
    number,
    predicate,
    sigma_for_variance,
    swapped,
    unit_misconceptions,
)
from klcourse.exercises.core import WRONG, Verdict, register
from klcourse.exercises.hints import HINTS
from klcourse.expfamily import kl_gamma, kl_poisson
from klcourse.gaussians import kl_diag_normal, kl_mvn, kl_normal

# --------------------------------------------------------------------------- problem data
#: ``gaussians.kl-by-hand``: D(N(1, 2^2) || N(0, 3^2)); 2 and 3 are standard deviations.
BY_HAND = (1.0, 2.0, 0.0, 3.0)

#: ``gaussians.vae-term``: one encoder output for a 6-dimensional latent space.
VAE_MU = (0.8, -1.5, 0.1, 0.0, 2.2, -0.4)
VAE_LOGVAR = (-0.5, 0.3, -2.0, 0.0, -1.2, 0.7)

#: ``gaussians.fisher-approx``: the point (mu, sigma) and the step (d_mu, d_sigma).
FISHER_POINT = (0.0, 0.5)
FISHER_STEP = (0.02, 0.01)

#: ``gaussians.mvn-by-hand``: D(N(MVN_MU0, MVN_COV0) || N(MVN_MU1, MVN_COV1)) in two dimensions.
MVN_MU0 = (1.0, -1.0)
MVN_COV0 = ((2.0, 0.6), (0.6, 1.0))
MVN_MU1 = (0.0, 0.5)
MVN_COV1 = ((1.0, -0.3), (-0.3, 0.5))

#: ``gaussians.poisson-by-hand``: D(Poisson(4) || Poisson(2.5)), rates (= means) of P and Q.
POISSON_BY_HAND = (4.0, 2.5)

#: ``gaussians.gamma-waiting``: D(Gamma(3, rate 2) || Gamma(2, rate 0.5)) as (shape0, rate0, shape1, rate1).
GAMMA_WAITING = (3.0, 2.0, 2.0, 0.5)

#: ``gaussians.equal-mse``: how much larger one KL must be than the other (pairs differing in width only).
EQUAL_MSE_RATIO = 10.0


def _mvn_data():
    return tuple(np.array(v, dtype=float) for v in (MVN_MU0, MVN_COV0, MVN_MU1, MVN_COV1))


# --------------------------------------------------------------------------- gaussians.kl-by-hand
def _by_hand_log10_in_log_term() -> float:
    m0, s0, m1, s1 = BY_HAND
    return math.log10(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5


register(
    "gaussians.kl-by-hand",
    title="D(N(1, 2²) ‖ N(0, 3²)) by hand",
    kind="number",
    checker=number(
        lambda: kl_normal(*BY_HAND),
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: kl_normal(BY_HAND[2], BY_HAND[3], BY_HAND[0], BY_HAND[1])),
            sigma_for_variance(lambda: kl_normal(BY_HAND[0], BY_HAND[1] ** 2, BY_HAND[2], BY_HAND[3] ** 2)),
            sigma_for_variance(lambda: kl_normal(BY_HAND[0], math.sqrt(BY_HAND[1]), BY_HAND[2],
                                                 math.sqrt(BY_HAND[3]))),
            forgot_half(lambda: kl_normal(*BY_HAND) + 0.5),
            Misconception("log10", _by_hand_log10_in_log_term,
                          "The log term looks like a base-10 logarithm (np.log10 / math.log10); KL in nats "
                          "uses the natural log."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.kl-gauss
def kl_gauss_cases(rng: np.random.Generator) -> list[Case]:
    """Randomised and edge cases for ``gaussians.kl-gauss`` (scalar arguments only)."""
    cases = [
        Case("identical distributions N(0.3, 1.7²) and N(0.3, 1.7²)", (0.3, 1.7, 0.3, 1.7)),
        Case("equal means, σ0 = 1, σ1 = 2", (0.0, 1.0, 0.0, 2.0)),
        Case("equal means, σ0 = 2, σ1 = 1", (0.0, 2.0, 0.0, 1.0)),
        Case("equal σ = 1, means 0 and 1", (0.0, 1.0, 1.0, 1.0)),
        Case("a very wide P and a narrow Q (σ0 = 10, σ1 = 0.1)", (0.0, 10.0, 0.0, 0.1)),
        Case("a narrow P and a wide Q (σ0 = 0.1, σ1 = 10)", (0.0, 0.1, 0.0, 10.0)),
        Case("negative means far apart, N(-5, 0.5²) vs N(5, 2²)", (-5.0, 0.5, 5.0, 2.0)),
    ]
    for i in range(6):
        mu0, mu1 = rng.normal(0.0, 2.0, size=2)
        s0, s1 = np.exp(rng.uniform(-1.5, 1.5, size=2))
        cases.append(Case(f"random case {i + 1}: N({mu0:.2f}, {s0:.2f}²) vs N({mu1:.2f}, {s1:.2f}²)",
                          (float(mu0), float(s0), float(mu1), float(s1))))
    return cases


def _kl_gauss_variances(mu0, v0, mu1, v1):
    """The KL if the learner's sigma arguments were variances (the formula written for variances)."""
    return kl_normal(mu0, math.sqrt(v0), mu1, math.sqrt(v1))


def _kl_gauss_unsquared(mu0, s0, mu1, s1):
    return math.log(s1 / s0) + (s0 + (mu0 - mu1) ** 2) / (2 * s1) - 0.5


def _kl_gauss_log2(mu0, s0, mu1, s1):
    return math.log2(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5


def _kl_gauss_log10(mu0, s0, mu1, s1):
    return math.log10(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5


register(
    "gaussians.kl-gauss",
    title="Implement kl_gauss(mu0, s0, mu1, s1)",
    kind="function",
    checker=function(
        kl_normal,
        kl_gauss_cases,
        name="kl_gauss",
        nan_hint="every case has σ0, σ1 > 0, so look for a log or square root of a negative number or a 0/0.",
        misconceptions=[
            swapped(lambda m0, s0, m1, s1: kl_normal(m1, s1, m0, s0)),
            sigma_for_variance(_kl_gauss_variances),
            sigma_for_variance(_kl_gauss_unsquared),
            forgot_half(lambda m0, s0, m1, s1: kl_normal(m0, s0, m1, s1) + 0.5),
            Misconception("log10", _kl_gauss_log10,
                          "The log term looks like a base-10 logarithm; KL in nats uses the natural log "
                          "(math.log / np.log)."),
            unit_misconceptions(kl_normal, "nats")[0],  # the whole KL in bits
            Misconception("log2", _kl_gauss_log2,
                          "The log term looks like a base-2 logarithm (bits); KL in nats uses the natural log "
                          "(math.log / np.log)."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.vae-term
def vae_term_expected() -> float:
    """D(N(mu, diag exp(logvar)) || N(0, I)) summed over the latent dimensions."""
    mu, logvar = np.array(VAE_MU), np.array(VAE_LOGVAR)
    return kl_diag_normal(mu, np.exp(0.5 * logvar), np.zeros_like(mu), np.ones_like(mu))


def _vae_term_swapped() -> float:
    """D(N(0, I) ‖ N(mu, diag exp(logvar))): the prior first."""
    mu, logvar = np.array(VAE_MU), np.array(VAE_LOGVAR)
    return kl_diag_normal(np.zeros_like(mu), np.ones_like(mu), mu, np.exp(0.5 * logvar))


def _vae_logvar_as_logsigma() -> float:
    mu, logvar = np.array(VAE_MU), np.array(VAE_LOGVAR)
    return kl_diag_normal(mu, np.exp(logvar), np.zeros_like(mu), np.ones_like(mu))


register(
    "gaussians.vae-term",
    title="The VAE's KL term for one encoder output",
    kind="number",
    checker=number(
        vae_term_expected,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            Misconception("sum-vs-mean", lambda: vae_term_expected() / len(VAE_MU),
                          "That is the mean over the latent dimensions. The KL of a diagonal Gaussian is the "
                          "sum of the per-dimension KLs (independent coordinates add)."),
            sigma_for_variance(_vae_logvar_as_logsigma),
            swapped(_vae_term_swapped),
            forgot_half(lambda: vae_term_expected() + len(VAE_MU) / 2),
            Misconception("factor-of-two", lambda: 2 * vae_term_expected(),
                          "Twice the right value: the bracket Σ(σ² + μ² − 1 − log σ²) is multiplied by 1/2."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.fisher-approx
def fisher_quadratic(point, step) -> float:
    """½ δᵀ F δ with the Fisher information of N(mu, sigma²) in (mu, sigma): F = diag(1/σ², 2/σ²)."""
    _, sigma = point
    d_mu, d_sigma = step
    fisher = np.diag([1.0 / sigma**2, 2.0 / sigma**2])
    delta = np.array([d_mu, d_sigma])
    return float(0.5 * delta @ fisher @ delta)


def _fisher_exact() -> float:
    (mu, sigma), (d_mu, d_sigma) = FISHER_POINT, FISHER_STEP
    return kl_normal(mu, sigma, mu + d_mu, sigma + d_sigma)


def _fisher_same_weights() -> float:
    (_, sigma), (d_mu, d_sigma) = FISHER_POINT, FISHER_STEP
    return 0.5 * (d_mu**2 + d_sigma**2) / sigma**2


register(
    "gaussians.fisher-approx",
    title="The Fisher (quadratic) approximation of a small KL",
    kind="number",
    checker=number(
        lambda: fisher_quadratic(FISHER_POINT, FISHER_STEP),
        sigfigs=3,
        misconceptions=[
            Misconception("exact-kl", _fisher_exact,
                          "That is the exact KL from the closed form; the exercise asks for the quadratic "
                          "approximation ½ δᵀ F δ (the two differ at third order in δ)."),
            Misconception("euclidean", lambda: 0.5 * float(np.sum(np.square(FISHER_STEP))),
                          "That is ½‖δ‖², i.e. F = I: a squared-parameter distance. The Fisher matrix of "
                          "N(μ, σ²) in (μ, σ) is diag(1/σ², 2/σ²)."),
            Misconception("fisher-sigma-entry", _fisher_same_weights,
                          "The σ-entry of the Fisher matrix is 2/σ², not 1/σ²: a change of width costs twice "
                          "as much as the same change of location."),
            Misconception("factor-of-two", lambda: 2 * fisher_quadratic(FISHER_POINT, FISHER_STEP),
                          "Twice the right value: KL ≈ ½ δᵀ F δ, with the factor ½."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.mvn-by-hand
def _mvn_expected() -> float:
    return kl_mvn(*_mvn_data())


def _mvn_swapped() -> float:
    mu0, cov0, mu1, cov1 = _mvn_data()
    return kl_mvn(mu1, cov1, mu0, cov0)


def _mvn_no_inverse() -> float:
    """Σ1 used where Σ1⁻¹ belongs in the trace and Mahalanobis terms."""
    mu0, cov0, mu1, cov1 = _mvn_data()
    gap = mu1 - mu0
    logdet_ratio = np.linalg.slogdet(cov1)[1] - np.linalg.slogdet(cov0)[1]
    return 0.5 * (np.trace(cov1 @ cov0) + gap @ cov1 @ gap - len(gap) + logdet_ratio)


def _mvn_logdet_flipped() -> float:
    mu0, cov0, _, cov1 = _mvn_data()
    logdet_ratio = np.linalg.slogdet(cov1)[1] - np.linalg.slogdet(cov0)[1]
    return _mvn_expected() - logdet_ratio


def _mvn_diagonal_only() -> float:
    mu0, cov0, mu1, cov1 = _mvn_data()
    return kl_diag_normal(mu0, np.sqrt(np.diag(cov0)), mu1, np.sqrt(np.diag(cov1)))


register(
    "gaussians.mvn-by-hand",
    title="A two-dimensional KL from the trace, Mahalanobis and log-determinant terms",
    kind="number",
    checker=number(
        _mvn_expected,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(_mvn_swapped),
            forgot_half(lambda: _mvn_expected() + len(MVN_MU0) / 2),
            Misconception("no-inverse", _mvn_no_inverse,
                          "The trace and Mahalanobis terms need the inverse Σ1⁻¹ of Q's covariance, not Σ1."),
            Misconception("logdet-flipped", _mvn_logdet_flipped,
                          "The log-determinant term has the wrong sign: it is log(det Σ1 / det Σ0), "
                          "Q's covariance on top."),
            Misconception("diagonal-only", _mvn_diagonal_only,
                          "That is the KL between the diagonals only: the off-diagonal covariances matter "
                          "(the diagonal formula is a special case)."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.equal-mse
def _param_mse(pair) -> float:
    mu0, s0, mu1, s1 = pair
    return ((mu0 - mu1) ** 2 + (s0 - s1) ** 2) / 2


def _as_pair(candidate, which: str) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in np.asarray(candidate, dtype=float).ravel())
    if len(values) != 4:
        raise ValueError(f"the {which} pair must be four numbers (mu0, sigma0, mu1, sigma1), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"the {which} pair contains NaN or inf")
    if values[1] <= 0 or values[3] <= 0:
        raise ValueError(f"the standard deviations of the {which} pair must be > 0")
    return values


def _equal_mse_test(answer) -> tuple[bool, str]:
    answer = _from_torch(answer)
    if isinstance(answer, np.ndarray):  # a 2×4 array holds the two pairs as its rows
        if answer.ndim != 2 or answer.shape[0] != 2:
            raise TypeError(f"give two pairs, as an array of shape (2, 4) with one pair (mu0, sigma0, mu1, sigma1) "
                            f"per row; got shape {answer.shape}")
        answer = list(answer)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise TypeError("give two pairs: ((mu0, sigma0, mu1, sigma1), (mu0', sigma0', mu1', sigma1'))")
    first, second = _as_pair(answer[0], "first"), _as_pair(answer[1], "second")
    if first[0] != first[2] or second[0] != second[2]:
        return False, "Keep the two means equal within each pair: only the widths may differ in this exercise."
    mse = _param_mse(first), _param_mse(second)
    if min(mse) == 0:
        return False, "In one pair the two Gaussians are identical (MSE 0): pick pairs that differ."
    if not math.isclose(mse[0], mse[1], rel_tol=1e-6):
        return False, f"The parameter MSEs differ ({mse[0]:.6g} vs {mse[1]:.6g}); make them equal."
    kls = kl_normal(*first), kl_normal(*second)
    if not all(math.isfinite(k) for k in kls):  # inf / inf is NaN, and NaN < ratio is False: no pass by overflow
        return False, "A KL overflows to inf in float64 here: pick widths of moderate size."
    ratio = max(kls) / min(kls)
    if not ratio >= EQUAL_MSE_RATIO:
        return False, (f"Equal MSE, but the KLs ({kls[0]:.4g} and {kls[1]:.4g} nats) differ only by a factor "
                       f"{ratio:.3g}; find pairs where one is at least {EQUAL_MSE_RATIO:g}× the other.")
    return True, (f"Correct! Same parameter MSE {mse[0]:.4g}, but KLs of {kls[0]:.4g} and {kls[1]:.4g} nats "
                  f"(a factor {ratio:.3g}).")


register(
    "gaussians.equal-mse",
    title="Equal parameter MSE, very different KL",
    kind="counterexample",
    checker=predicate(_equal_mse_test, tolerance=conditions(
        "Accepted: two pairs, each with equal means, whose parameter MSEs agree to a relative 1e-6 and whose "
        f"KL divergences differ by a factor of at least {EQUAL_MSE_RATIO:g}.")),
)


# --------------------------------------------------------------------------- gaussians.halve-or-double
def _halve_or_double_answer() -> str:
    halve, double = kl_normal(0.0, 0.5, 0.0, 1.0), kl_normal(0.0, 2.0, 0.0, 1.0)
    if math.isclose(halve, double):
        return "same"
    return "doubling" if double > halve else "halving"


register(
    "gaussians.halve-or-double",
    title="Halving or doubling σ: which costs more KL?",
    kind="predict",
    checker=choice(
        _halve_or_double_answer(),
        ["halving", "doubling", "same"],
        explanations={
            "halving": "Not for this direction. Halving wins for the swapped divergence D(N(0, 1) ‖ N(0, σ²)), "
                       "where σ sits in the second argument; here σ is in the first. Look at the σ curve again.",
            "same": "KL is not symmetric in log σ: ½(σ² − 1 − log σ²) gives different values at σ = 1/2 and "
                    "σ = 2. Evaluate both.",
        },
    ),
)


# --------------------------------------------------------------------------- gaussians.poisson-by-hand
def _poisson_log_term_only() -> float:
    lam0, lam1 = POISSON_BY_HAND
    return lam0 * math.log(lam0 / lam1)


def _poisson_log10() -> float:
    lam0, lam1 = POISSON_BY_HAND
    return lam0 * math.log10(lam0 / lam1) - lam0 + lam1


register(
    "gaussians.poisson-by-hand",
    title="D(Poisson(4) ‖ Poisson(2.5)) by hand",
    kind="number",
    checker=number(
        lambda: kl_poisson(*POISSON_BY_HAND),
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: kl_poisson(POISSON_BY_HAND[1], POISSON_BY_HAND[0])),
            Misconception("forgot-constant", _poisson_log_term_only,
                          "That is only λ·log(λ/λ′). The log-partition terms −λ + λ′ belong to the divergence "
                          "too: without them D(P‖P) would still be 0 but D could become negative elsewhere."),
            Misconception("log10", _poisson_log10,
                          "The log term looks like a base-10 logarithm; KL in nats uses the natural log."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.gamma-waiting
def _gamma_rates_as_scales() -> float:
    a0, b0, a1, b1 = GAMMA_WAITING
    return kl_gamma(a0, 1.0 / b0, a1, 1.0 / b1)


_RATE_SCALE = ("It looks like the rates were used as scales (scale = 1/rate): scipy.stats.gamma(a, scale=...) "
               "and numpy's gamma sampler take the scale, the formula of this chapter the rate β, with mean "
               "α/β.")

register(
    "gaussians.gamma-waiting",
    title="Two gamma models of a waiting time: D(Gamma(3, rate 2) ‖ Gamma(2, rate 0.5))",
    kind="number",
    checker=number(
        lambda: kl_gamma(*GAMMA_WAITING),
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            Misconception("rate-scale", _gamma_rates_as_scales, _RATE_SCALE),
            swapped(lambda: kl_gamma(GAMMA_WAITING[2], GAMMA_WAITING[3], GAMMA_WAITING[0], GAMMA_WAITING[1])),
            Misconception("rate-scale-swapped",
                          lambda: kl_gamma(GAMMA_WAITING[2], 1 / GAMMA_WAITING[3], GAMMA_WAITING[0],
                                           1 / GAMMA_WAITING[1]),
                          "Two slips at once: the arguments are swapped (D(P‖Q) averages under P, the first) and "
                          "the rates were used as scales (scale = 1/rate)."),
        ],
    ),
)


# --------------------------------------------------------------------------- gaussians.kl-poisson
def kl_poisson_cases(rng: np.random.Generator) -> list[Case]:
    """Edge and randomised cases for ``gaussians.kl-poisson`` (scalar rates >= 0)."""
    cases = [
        Case("equal rates λ = λ′ = 3", (3.0, 3.0)),
        Case("λ = 2, λ′ = 5", (2.0, 5.0)),
        Case("λ = 5, λ′ = 2", (5.0, 2.0)),
        Case("λ = 0 (P is the point mass at 0), λ′ = 1.5", (0.0, 1.5), tag="zero-rate"),
        Case("λ = λ′ = 0", (0.0, 0.0), tag="zero-rate"),
        Case("λ = 2, λ′ = 0 (Q is the point mass at 0)", (2.0, 0.0), tag="mismatch"),
        Case("a large rate, λ = 400, λ′ = 380", (400.0, 380.0)),
    ]
    for i in range(6):
        lam0, lam1 = np.exp(rng.uniform(-2.0, 3.0, size=2))
        cases.append(Case(f"random case {i + 1}: λ = {lam0:.3f}, λ′ = {lam1:.3f}", (float(lam0), float(lam1))))
    return cases


def _poisson_without_rate_gap(lam0, lam1):
    if lam0 == 0:
        return 0.0
    return math.inf if lam1 == 0 else lam0 * math.log(lam0 / lam1)


def _diagnose_poisson(j: Judged) -> Verdict | None:
    """NaN at λ = 0 (0 log 0) and a clipped rate instead of inf."""
    for _, got, _ in j.output("zero-rate"):
        if not isinstance(got, str) and np.isnan(got).any():
            return Verdict(False, "Your kl_pois returns NaN when λ = 0: the term λ·log(λ/λ′) is 0 there "
                           "(0·log 0 = 0), and the divergence is just λ′.", WRONG, "zero-rate-nan")
    for _, got, _ in j.output("mismatch"):
        if not isinstance(got, str) and got.size == 1 and np.isfinite(got).all():
            return Verdict(False, "Your kl_pois returns a finite number when λ′ = 0 < λ. Then Q gives probability 0 to "
                           "every k ≥ 1, which P produces: the divergence is +inf. Replacing λ′ = 0 by a small ε "
                           "hides it and makes the value depend on the ε you picked.", WRONG, "clipped-rate")
    return None


register(
    "gaussians.kl-poisson",
    title="Implement kl_pois(lam0, lam1) with its edge cases",
    kind="function",
    checker=function(
        kl_poisson,
        kl_poisson_cases,
        name="kl_pois",
        misconceptions=[
            swapped(lambda lam0, lam1: kl_poisson(lam1, lam0)),
            Misconception("forgot-constant", _poisson_without_rate_gap,
                          "Only λ·log(λ/λ′): the terms −λ + λ′ (from the log-partition function A(θ) = e^θ) are "
                          "part of the divergence."),
            *unit_misconceptions(kl_poisson, "nats"),
        ],
        diagnose=_diagnose_poisson,
    ),
)


# --------------------------------------------------------------------------- hints of the exercises above
# (kept here rather than in klcourse/exercises/hints.py while that file is being edited for other chapters;
# setdefault: an entry written there later takes precedence)
for _id, _hints in {
    "gaussians.poisson-by-hand": (
        "Use the closed form of the section on exponential families: D(Poisson(λ) ‖ Poisson(λ′)) = "
        "λ·log(λ/λ′) − λ + λ′, with λ the rate of the first argument, under which the expectation is taken.",
        "The −λ + λ′ comes from the log-partition function A(θ) = e^θ: it is not optional, and natural logs "
        "give nats.",
        "Evaluate it with math.log, then compare with a direct sum over k of p(k)·log(p(k)/q(k)) using "
        "scipy.stats.poisson.pmf for k up to 60.",
    ),
    "gaussians.gamma-waiting": (
        "The gamma closed form of this chapter uses shape α and rate β (mean α/β); the first distribution is "
        "the one with shape 3 and rate 2.",
        "You need log Γ and the digamma function ψ: scipy.special.gammaln and scipy.special.digamma.",
        "To check by quadrature, build scipy.stats.gamma(a, scale=1 / rate) for each model (scipy takes the "
        "scale) and integrate p(x)·log(p(x)/q(x)) over x > 0 with scipy.integrate.quad.",
    ),
    "gaussians.kl-poisson": (
        "Start from the closed form λ·log(λ/λ′) − λ + λ′ and decide what each edge case means: a rate of 0 is "
        "the point mass at k = 0.",
        "At λ = 0 use the convention 0·log 0 = 0 in the closed form: which terms are left? At λ′ = 0 < λ, ask "
        "which counts k each distribution allows, and remember what the definition gives when Q rules out "
        "an outcome P produces (never a small ε in place of λ′).",
        "Test the edge cases in order, λ = 0 first (it also covers λ = λ′ = 0), then λ′ = 0, then the closed "
        "form with math.log; compare your function with a direct sum over k of p(k)·log(p(k)/q(k)) "
        "(scipy.stats.poisson.pmf) for a few rates.",
    ),
}.items():
    HINTS.setdefault(_id, _hints)
