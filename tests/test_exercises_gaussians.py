"""Chapter 3 exercises: each checker accepts an answer computed here by an independent route
(quadrature, the textbook det/inv formula, hand-written formulas) and names every targeted misconception."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

import klcourse.exercises.gaussians as ex
from klcourse import kl_normal
from klcourse.exercises import evaluate, list_exercises

LN2, LN10 = math.log(2), math.log(10)


def kl_quad(mu0, s0, mu1, s1):
    """D(N(mu0, s0²) ‖ N(mu1, s1²)) by numerical integration of p log(p/q)."""
    p, q = stats.norm(mu0, s0), stats.norm(mu1, s1)
    value, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), mu0 - 40 * s0, mu0 + 40 * s0,
                              points=[mu0], epsabs=1e-13, epsrel=1e-12, limit=200)
    return value


def kl_textbook(mu0, s0, mu1, s1):
    return math.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5


def assert_misconception(exercise_id, answer, name):
    fb = evaluate(exercise_id, answer)
    assert not fb.passed and fb.misconception == name, (fb.misconception, fb.message)


def test_ten_exercises_of_mixed_kinds_are_registered():
    exercises = list_exercises("gaussians")
    assert len(exercises) == 10
    assert {e.kind for e in exercises} >= {"number", "function", "counterexample", "predict"}


@pytest.mark.parametrize("exercise", [e.id for e in list_exercises("gaussians")])
def test_unanswered_is_not_a_crash(exercise):
    assert evaluate(exercise, ...).status == "not answered"


# ------------------------------------------------------------------ kl-by-hand
def test_kl_by_hand_accepts_quadrature_value():
    right = kl_quad(*ex.BY_HAND)
    assert evaluate("gaussians.kl-by-hand", right).passed
    assert evaluate("gaussians.kl-by-hand", math.log(3 / 2) + 5 / 18 - 0.5).passed  # by hand


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (kl_quad(0.0, 3.0, 1.0, 2.0), "swapped"),
        (kl_quad(1.0, 4.0, 0.0, 9.0), "sigma-variance"),  # variances plugged in as sigma
        (kl_quad(1.0, math.sqrt(2), 0.0, math.sqrt(3)), "sigma-variance"),  # 2 and 3 read as variances
        (kl_quad(1.0, 2.0, 0.0, 3.0) + 0.5, "forgot-constant"),
        (kl_quad(1.0, 2.0, 0.0, 3.0) / LN2, "bits"),
        (math.log10(1.5) + 5 / 18 - 0.5, "log10"),
    ],
)
def test_kl_by_hand_names_misconceptions(wrong, name):
    assert_misconception("gaussians.kl-by-hand", wrong, name)


def test_kl_by_hand_rejects_an_unrecognised_value_without_revealing_it():
    fb = evaluate("gaussians.kl-by-hand", 0.3)
    assert not fb.passed and fb.misconception is None
    assert f"{kl_quad(*ex.BY_HAND):.3f}" not in fb.message


# ------------------------------------------------------------------ kl-gauss
def kl_gauss_hand(mu0, s0, mu1, s1):
    return kl_textbook(mu0, s0, mu1, s1)


def test_kl_gauss_accepts_a_textbook_and_the_reference_implementation():
    assert evaluate("gaussians.kl-gauss", kl_gauss_hand).passed
    assert evaluate("gaussians.kl-gauss", kl_normal).misconception == "klcourse-own"


def test_kl_gauss_cases_include_identical_and_random_cases_matching_quadrature():
    cases = ex.kl_gauss_cases(np.random.default_rng(1))
    assert any(c.args[:2] == c.args[2:] for c in cases)
    assert sum("random" in c.description for c in cases) >= 5
    for case in cases[:8]:
        assert kl_normal(*case.args) == pytest.approx(kl_quad(*case.args), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize(
    ("buggy", "name"),
    [
        (lambda m0, s0, m1, s1: kl_textbook(m1, s1, m0, s0), "swapped"),
        (lambda m0, v0, m1, v1: 0.5 * math.log(v1 / v0) + (v0 + (m0 - m1) ** 2) / (2 * v1) - 0.5, "sigma-variance"),
        (lambda m0, s0, m1, s1: math.log(s1 / s0) + (s0 + (m0 - m1) ** 2) / (2 * s1) - 0.5, "sigma-variance"),
        (lambda m0, s0, m1, s1: math.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2), "forgot-constant"),
        (lambda m0, s0, m1, s1: math.log10(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5, "log10"),
    ],
)
def test_kl_gauss_names_buggy_implementations(buggy, name):
    assert_misconception("gaussians.kl-gauss", buggy, name)


def test_kl_gauss_rejects_a_symmetrised_kl_and_non_functions():
    def symmetrised(m0, s0, m1, s1):
        return kl_textbook(m0, s0, m1, s1) + kl_textbook(m1, s1, m0, s0)

    fb = evaluate("gaussians.kl-gauss", symmetrised)
    assert not fb.passed and fb.misconception is None
    assert evaluate("gaussians.kl-gauss", 0.5).status == "invalid"


# ------------------------------------------------------------------ vae-term
def vae_hand():
    mu, logvar = np.array(ex.VAE_MU), np.array(ex.VAE_LOGVAR)
    return mu, logvar, np.exp(logvar)


def test_vae_term_accepts_the_textbook_formula():
    mu, logvar, var = vae_hand()
    assert evaluate("gaussians.vae-term", 0.5 * np.sum(var + mu**2 - 1 - logvar)).passed


def test_vae_term_agrees_with_quadrature_per_dimension():
    mu, _, var = vae_hand()
    total = sum(kl_quad(m, math.sqrt(v), 0.0, 1.0) for m, v in zip(mu, var, strict=True))
    assert evaluate("gaussians.vae-term", total).passed


@pytest.mark.parametrize(
    ("transform", "name"),
    [
        (lambda mu, lv, v: 0.5 * np.mean(v + mu**2 - 1 - lv), "sum-vs-mean"),
        (lambda mu, lv, v: 0.5 * np.sum(np.exp(2 * lv) + mu**2 - 1 - 2 * lv), "sigma-variance"),
        (lambda mu, lv, v: 0.5 * np.sum(v + mu**2 - lv), "forgot-constant"),
        (lambda mu, lv, v: np.sum(v + mu**2 - 1 - lv), "factor-of-two"),
        (lambda mu, lv, v: 0.5 * np.sum(v + mu**2 - 1 - lv) / LN2, "bits"),
    ],
)
def test_vae_term_names_misconceptions(transform, name):
    assert_misconception("gaussians.vae-term", transform(*vae_hand()), name)


# ------------------------------------------------------------------ fisher-approx
def fisher_by_quadrature(mu, sigma):
    """F_ij = E[score_i score_j] for N(mu, sigma²) in (mu, sigma), by numerical integration."""
    p = stats.norm(mu, sigma)
    scores = (lambda x: (x - mu) / sigma**2, lambda x: -1 / sigma + (x - mu) ** 2 / sigma**3)
    fisher = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            fisher[i, j] = integrate.quad(lambda x, i=i, j=j: p.pdf(x) * scores[i](x) * scores[j](x),
                                          mu - 40 * sigma, mu + 40 * sigma, points=[mu])[0]
    return fisher


def test_fisher_matrix_by_quadrature_is_diag_one_two_over_sigma_squared():
    sigma = ex.FISHER_POINT[1]
    np.testing.assert_allclose(fisher_by_quadrature(*ex.FISHER_POINT), np.diag([1, 2]) / sigma**2, atol=1e-9)


def test_fisher_approx_accepts_quadratic_form_from_quadrature_fisher():
    delta = np.array(ex.FISHER_STEP)
    right = 0.5 * delta @ fisher_by_quadrature(*ex.FISHER_POINT) @ delta
    assert evaluate("gaussians.fisher-approx", right).passed


def test_fisher_quadratic_ratio_tends_to_one():
    mu, sigma = ex.FISHER_POINT
    ratios = [kl_quad(mu, sigma, mu + t * 0.3, sigma + t * 0.2) / ex.fisher_quadratic((mu, sigma), (t * 0.3, t * 0.2))
              for t in (1e-1, 1e-2, 1e-3)]
    errors = [abs(r - 1) for r in ratios]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (kl_quad(0.0, 0.5, 0.02, 0.51), "exact-kl"),
        (0.5 * (0.02**2 + 0.01**2), "euclidean"),
        (0.5 * (0.02**2 + 0.01**2) / 0.25, "fisher-sigma-entry"),
        ((0.02**2 + 2 * 0.01**2) / 0.25, "factor-of-two"),
    ],
)
def test_fisher_approx_names_misconceptions(wrong, name):
    assert ex.FISHER_POINT == (0.0, 0.5) and ex.FISHER_STEP == (0.02, 0.01)
    if name == "fisher-sigma-entry":
        # this mistake gives exactly 0.001, which is also the right answer (0.0012) rounded to one figure: the
        # digits cannot tell them apart, so "give more digits" comes first and the mistake follows as a condition
        right = 0.5 * (0.02**2 / 0.25 + 2 * 0.01**2 / 0.25)
        assert round(right, 3) == wrong
        fb = evaluate("gaussians.fisher-approx", wrong)
        assert fb.misconception == "too-few-digits" and fb.message.startswith("Right to the digits you gave")
        assert "The σ-entry of the Fisher matrix is 2/σ²" in fb.message
        return
    assert_misconception("gaussians.fisher-approx", wrong, name)


# ------------------------------------------------------------------ mvn-by-hand
def mvn_textbook(mu0, cov0, mu1, cov1):
    """The det/inv formula, fine for a well-conditioned 2 × 2 problem."""
    mu0, cov0, mu1, cov1 = (np.array(v, dtype=float) for v in (mu0, cov0, mu1, cov1))
    inv1, gap = np.linalg.inv(cov1), mu1 - mu0
    log_det_ratio = math.log(np.linalg.det(cov1) / np.linalg.det(cov0))
    return 0.5 * (np.trace(inv1 @ cov0) + gap @ inv1 @ gap - len(gap) + log_det_ratio)


MVN = (ex.MVN_MU0, ex.MVN_COV0, ex.MVN_MU1, ex.MVN_COV1)


def test_mvn_by_hand_accepts_textbook_value_and_monte_carlo_agrees():
    right = mvn_textbook(*MVN)
    assert evaluate("gaussians.mvn-by-hand", right).passed
    p, q = stats.multivariate_normal(ex.MVN_MU0, ex.MVN_COV0), stats.multivariate_normal(ex.MVN_MU1, ex.MVN_COV1)
    x = p.rvs(size=200_000, random_state=np.random.default_rng(0))
    log_ratio = p.logpdf(x) - q.logpdf(x)
    assert abs(log_ratio.mean() - right) < 5 * log_ratio.std() / math.sqrt(len(x))


def test_mvn_by_hand_names_misconceptions():
    mu0, cov0, mu1, cov1 = (np.array(v, dtype=float) for v in MVN)
    right = mvn_textbook(*MVN)
    gap = mu1 - mu0
    log_det_ratio = math.log(np.linalg.det(cov1) / np.linalg.det(cov0))
    no_inverse = 0.5 * (np.trace(cov1 @ cov0) + gap @ cov1 @ gap - 2 + log_det_ratio)
    flipped = right - log_det_ratio
    diag_only = sum(kl_textbook(mu0[i], math.sqrt(cov0[i, i]), mu1[i], math.sqrt(cov1[i, i])) for i in range(2))
    for wrong, name in [
        (mvn_textbook(mu1, cov1, mu0, cov0), "swapped"),
        (right + 1.0, "forgot-constant"),
        (no_inverse, "no-inverse"),
        (flipped, "logdet-flipped"),
        (diag_only, "diagonal-only"),
        (right / LN10, "log10"),
    ]:
        assert_misconception("gaussians.mvn-by-hand", wrong, name)


# ------------------------------------------------------------------ equal-mse
def test_equal_mse_accepts_a_valid_counterexample():
    # widths only: sigma 0.01 -> 0.51 and 1 -> 1.5 both have parameter MSE 0.125
    first, second = (0, 0.01, 0, 0.51), (0, 1.0, 0, 1.5)
    assert kl_quad(*first) > 10 * kl_quad(*second)
    assert evaluate("gaussians.equal-mse", (first, second)).passed
    assert evaluate("gaussians.equal-mse", [[2, 0.2, 2, 0.4], [-1, 5.0, -1, 5.2]]).passed


@pytest.mark.parametrize(
    ("answer", "status", "needle"),
    [
        (((0, 1, 0, 2), (0, 1, 0, 3)), "wrong", "MSEs differ"),
        (((0, 1, 0, 2), (0, 2, 0, 1)), "wrong", "factor"),
        (((0, 1, 1, 1), (0, 0.1, 1, 0.1)), "wrong", "means equal"),
        (((0, 1, 0, 1), (0, 1, 0, 1)), "wrong", "identical"),
        (((0, 1, 1, 1),), "invalid", "two pairs"),
        (((0, -1, 0, 1), (0, 1, 0, 2)), "invalid", "> 0"),
        (((0, 1, 1), (0, 1, 1, 1)), "invalid", "four numbers"),
    ],
)
def test_equal_mse_rejects_bad_counterexamples(answer, status, needle):
    fb = evaluate("gaussians.equal-mse", answer)
    assert not fb.passed and fb.status == status and needle in fb.message


def test_equal_mse_accepts_the_two_pairs_as_a_2x4_array_or_tensor():
    import torch

    rows = [[0, 0.01, 0, 0.51], [0, 1.0, 0, 1.5]]  # each row one pair; the book's own answer
    assert kl_quad(*rows[0]) > 10 * kl_quad(*rows[1])
    assert evaluate("gaussians.equal-mse", np.array(rows)).passed
    assert evaluate("gaussians.equal-mse", torch.tensor(rows)).passed
    fb = evaluate("gaussians.equal-mse", np.array(rows).T)
    assert fb.status == "invalid" and "shape (2, 4)" in fb.message and "(4, 2)" in fb.message


@pytest.mark.parametrize(("answer", "needle"), [
    (({"mu0": 0, "sigma0": 1, "mu1": 0, "sigma1": 2}, (0, 1, 0, 3)), "contains a dict"),
    ({(0, 1, 0, 2), (0, 1, 0, 3)}, "is a set"),
    (((10**400, 1, 10**400, 1), (0, 1, 0, 2)), "too large for a floating-point number"),
])
def test_equal_mse_dicts_sets_and_huge_ints_get_plain_sentences(answer, needle):
    fb = evaluate("gaussians.equal-mse", answer)
    assert fb.status == "invalid" and needle in fb.message
    assert "float()" not in fb.message and "Error" not in fb.message


# ------------------------------------------------------------------ halve-or-double
def test_halve_or_double_matches_quadrature():
    halve, double = kl_quad(0, 0.5, 0, 1), kl_quad(0, 2, 0, 1)
    right = "doubling" if double > halve else "halving"
    assert evaluate("gaussians.halve-or-double", right).passed
    assert evaluate("gaussians.halve-or-double", right.upper()).passed
    for other in {"halving", "doubling", "same"} - {right}:
        fb = evaluate("gaussians.halve-or-double", other)
        assert not fb.passed and fb.misconception == other
    assert evaluate("gaussians.halve-or-double", 2).status == "invalid"


# ------------------------------------------------------------------ plotting helper
def test_plot_heatmap_labels_axes_and_colorbar():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from klcourse.plotting import plot_heatmap

    x, y = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 4)
    z = np.add.outer(y, x) ** 2
    fig, ax = plt.subplots()
    mesh = plot_heatmap(ax, x, y, z, xlabel="μ", ylabel="σ", cbar_label="KL (nats)", levels=[0.5, 1.0])
    assert ax.get_xlabel() == "μ" and ax.get_ylabel() == "σ"
    assert mesh.colorbar.ax.get_ylabel() == "KL (nats)"
    np.testing.assert_array_equal(mesh.get_array().reshape(z.shape), z)
    plt.close(fig)


# --------------------------------------------------------------------------- issue 9: klcourse's own function
def _kl_gauss_def_wrapper(mu0, s0, mu1, s1):
    return kl_normal(mu0, s0, mu1, s1)


def test_kl_gauss_rejects_klcourse_in_every_disguise():
    import functools

    import klcourse
    import klcourse as kc

    disguises = [kl_normal, lambda m0, s0, m1, s1: kl_normal(m0, s0, m1, s1), _kl_gauss_def_wrapper,
                 functools.partial(kl_normal), lambda *a: klcourse.kl_normal(*a), lambda *a: kc.gaussians.kl_normal(*a)]
    for answer in disguises:
        fb = evaluate("gaussians.kl-gauss", answer)
        assert not fb.passed and fb.misconception == "klcourse-own", answer
        assert "klcourse.gaussians.kl_normal" in fb.message and "write your own" in fb.message
    assert evaluate("gaussians.kl-gauss", kl_gauss_hand).passed


# --------------------------------------------------------------------------- issue 13: exponential families
def poisson_series(lam0, lam1):
    """D(Poisson(lam0) ‖ Poisson(lam1)) as a direct sum of p(k) log(p(k)/q(k)) over k."""
    k = np.arange(200)
    return float(np.sum(stats.poisson.pmf(k, lam0) * (stats.poisson.logpmf(k, lam0) - stats.poisson.logpmf(k, lam1))))


def gamma_quad(a0, rate0, a1, rate1):
    """D(Gamma(a0, rate0) ‖ Gamma(a1, rate1)) by quadrature (scipy's gamma takes scale = 1/rate)."""
    p, q = stats.gamma(a0, scale=1 / rate0), stats.gamma(a1, scale=1 / rate1)
    value, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), 0, p.isf(1e-16),
                              points=[p.mean()], epsabs=1e-13, epsrel=1e-12, limit=200)
    return value


def test_poisson_by_hand_accepts_the_series_and_the_hand_value():
    assert ex.POISSON_BY_HAND == (4.0, 2.5)
    assert evaluate("gaussians.poisson-by-hand", poisson_series(4.0, 2.5)).passed
    assert evaluate("gaussians.poisson-by-hand", round(4 * math.log(1.6) - 1.5, 3)).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (poisson_series(2.5, 4.0), "swapped"),
        (4 * math.log(1.6), "forgot-constant"),
        (poisson_series(4.0, 2.5) / LN2, "bits"),
        (4 * math.log10(1.6) - 4 + 2.5, "log10"),
    ],
)
def test_poisson_by_hand_names_misconceptions(wrong, name):
    assert_misconception("gaussians.poisson-by-hand", wrong, name)


def test_poisson_by_hand_negative_and_unrecognised_answers():
    fb = evaluate("gaussians.poisson-by-hand", 4 * math.log(2.5 / 4) - 4 + 2.5)  # log ratio upside down
    assert not fb.passed and "never negative" in fb.message
    fb = evaluate("gaussians.poisson-by-hand", 0.7)
    assert not fb.passed and fb.misconception is None and "0.380" not in fb.message


def test_gamma_waiting_accepts_quadrature():
    assert ex.GAMMA_WAITING == (3.0, 2.0, 2.0, 0.5)
    assert evaluate("gaussians.gamma-waiting", gamma_quad(3.0, 2.0, 2.0, 0.5)).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (gamma_quad(3.0, 0.5, 2.0, 2.0), "rate-scale"),  # stats.gamma(a, scale=rate): rates read as scales
        (gamma_quad(2.0, 0.5, 3.0, 2.0), "swapped"),
        (gamma_quad(2.0, 2.0, 3.0, 0.5), "rate-scale-swapped"),
        (gamma_quad(3.0, 2.0, 2.0, 0.5) / LN2, "bits"),
        (gamma_quad(3.0, 2.0, 2.0, 0.5) / LN10, "log10"),
    ],
)
def test_gamma_waiting_names_misconceptions(wrong, name):
    assert_misconception("gaussians.gamma-waiting", wrong, name)


def kl_pois_hand(lam0, lam1):
    if lam0 == 0:
        return lam1
    return math.inf if lam1 == 0 else lam0 * math.log(lam0 / lam1) - lam0 + lam1


def test_kl_poisson_accepts_a_hand_implementation_and_rejects_the_library():
    assert evaluate("gaussians.kl-poisson", kl_pois_hand).passed
    from klcourse import kl_poisson

    assert evaluate("gaussians.kl-poisson", kl_poisson).misconception == "klcourse-own"


def test_kl_poisson_cases_cover_the_edges_and_match_the_series():
    cases = ex.kl_poisson_cases(np.random.default_rng(3))
    assert {"zero-rate", "mismatch"} <= {c.tag for c in cases} and any(c.args[0] == c.args[1] for c in cases)
    for case in cases:
        lam0, lam1 = case.args
        if lam0 > 0 and lam1 > 0 and lam0 < 100:
            assert kl_pois_hand(lam0, lam1) == pytest.approx(poisson_series(lam0, lam1), rel=1e-10, abs=1e-15)
    assert poisson_series(1e-300, 1.5) == pytest.approx(kl_pois_hand(0.0, 1.5))  # λ → 0: the point mass


def _clipped(lam0, lam1, eps=1e-12):
    return kl_pois_hand(lam0, max(lam1, eps))


def _nan_at_zero(lam0, lam1):
    with np.errstate(all="ignore"):
        lam0, lam1 = np.float64(lam0), np.float64(lam1)
        return float(lam0 * np.log(lam0 / lam1) - lam0 + lam1) if lam1 > 0 else kl_pois_hand(lam0, lam1)


@pytest.mark.parametrize(
    ("buggy", "name"),
    [
        (lambda a, b: kl_pois_hand(b, a), "swapped"),
        (lambda a, b: (0.0 if a == 0 else (math.inf if b == 0 else a * math.log(a / b))), "forgot-constant"),
        (lambda a, b: kl_pois_hand(a, b) / LN2, "bits"),
        (lambda a, b: kl_pois_hand(a, b) / LN10, "log10"),
        (_clipped, "clipped-rate"),
        (_nan_at_zero, "zero-rate-nan"),
    ],
)
def test_kl_poisson_names_buggy_implementations(buggy, name):
    assert_misconception("gaussians.kl-poisson", buggy, name)


def test_kl_poisson_wrong_shape_and_non_function_get_a_sentence():
    fb = evaluate("gaussians.kl-poisson", lambda a, b: [kl_pois_hand(a, b)] * 2)
    assert not fb.passed and fb.status == "invalid" and "shape" in fb.message
    assert evaluate("gaussians.kl-poisson", 0.5).status == "invalid"


def test_new_exercises_have_hints_without_the_answer():
    from klcourse.exercises import hints as hints_module

    for eid in ("gaussians.poisson-by-hand", "gaussians.gamma-waiting", "gaussians.kl-poisson"):
        assert 2 <= len(hints_module.HINTS[eid]) <= 3
    text = " ".join(hints_module.HINTS["gaussians.poisson-by-hand"] + hints_module.HINTS["gaussians.gamma-waiting"])
    assert "0.38" not in text and "0.752" not in text


# ------------------------------------------------------------------ log base in kl-gauss
def test_kl_gauss_in_bits_is_named():
    assert_misconception("gaussians.kl-gauss", lambda m0, s0, m1, s1: kl_textbook(m0, s0, m1, s1) / math.log(2),
                         "bits")


def test_kl_gauss_with_log2_in_the_log_term_is_named():
    def log2_term(m0, s0, m1, s1):
        return math.log2(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5

    assert_misconception("gaussians.kl-gauss", log2_term, "log2")


# ------------------------------------------------------------------ vae-term swapped
def test_vae_term_with_the_prior_first_is_named_swapped():
    mu, var = np.array(ex.VAE_MU), np.exp(np.array(ex.VAE_LOGVAR))
    # D(N(0, 1) ‖ N(mu, var)) per dimension, summed: by quadrature, independent of the closed form
    reverse = sum(kl_quad(0.0, 1.0, m, math.sqrt(v)) for m, v in zip(mu, var, strict=True))
    assert_misconception("gaussians.vae-term", round(reverse, 4), "swapped")
