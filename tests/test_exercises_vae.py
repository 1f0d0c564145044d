"""Chapter 6 exercises: each checker accepts an answer computed here by an independent route
(torch.distributions, scipy quadrature, hand arithmetic) and names every targeted misconception."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Independent, Normal, kl_divergence

import klcourse.exercises.vae as ex
from klcourse import vae_kl
from klcourse.exercises import evaluate, list_exercises

LN2, LN10 = math.log(2), math.log(10)
NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "06_vae.ipynb"


def assert_misconception(exercise_id, answer, name):
    fb = evaluate(exercise_id, answer)
    assert not fb.passed and fb.misconception == name, (fb.misconception, fb.message)


def torch_kl(mu, logvar, *, reverse=False):
    """KL per row between N(mu, diag exp(logvar)) and N(0, I) with torch.distributions (float64)."""
    mu, logvar = torch.as_tensor(np.asarray(mu, dtype=float)), torch.as_tensor(np.asarray(logvar, dtype=float))
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return (kl_divergence(prior, q) if reverse else kl_divergence(q, prior)).numpy()


def test_every_exercise_of_the_chapter_is_registered_and_kinds_are_mixed():
    checked = set(re.findall(r'check\(\\"(vae\.[a-z0-9-]+)\\"', NOTEBOOK.read_text(encoding="utf-8")))
    exercises = list_exercises("vae")
    assert {e.id for e in exercises} == checked and len(exercises) >= 8
    assert {e.kind for e in exercises} >= {"number", "function", "predict"}


@pytest.mark.parametrize("exercise", [e.id for e in list_exercises("vae")])
def test_unanswered_and_nonsense_answers_are_not_crashes(exercise):
    assert evaluate(exercise, ...).status == "not answered"
    assert evaluate(exercise, None).status == "not answered"
    assert evaluate(exercise, object()).status in ("invalid", "wrong")


# --------------------------------------------------------------------------- kl-batch
def kl_1d_quad(mu, var):
    """D(N(mu, var) || N(0, 1)) by numerical integration."""
    q, p = stats.norm(mu, math.sqrt(var)), stats.norm(0, 1)
    value, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), mu - 30 * math.sqrt(var),
                              mu + 30 * math.sqrt(var), epsabs=1e-13, limit=200)
    return value


def test_kl_batch_accepts_torch_and_quadrature_values():
    right = float(np.mean(torch_kl(ex.BATCH_MU, ex.BATCH_LOGVAR)))
    assert evaluate("vae.kl-batch", right).passed
    by_quadrature = np.mean([sum(kl_1d_quad(m, math.exp(v)) for m, v in zip(mu_row, lv_row, strict=True))
                             for mu_row, lv_row in zip(ex.BATCH_MU, ex.BATCH_LOGVAR, strict=True)])
    assert evaluate("vae.kl-batch", by_quadrature).passed
    assert evaluate("vae.kl-batch", torch.tensor(right)).passed  # a 0-d tensor is fine


def test_kl_batch_names_the_mistakes():
    mu, logvar = np.array(ex.BATCH_MU), np.array(ex.BATCH_LOGVAR)
    per_image = torch_kl(mu, logvar)
    right = float(per_image.mean())
    assert_misconception("vae.kl-batch", float(per_image.sum()), "sum-vs-mean")
    assert_misconception("vae.kl-batch", right / 2, "mean-over-dims")
    assert_misconception("vae.kl-batch", float(np.mean(torch_kl(mu, 2 * logvar))), "sigma-variance")
    forgot_minus_one = float(np.mean(0.5 * np.sum(np.exp(logvar) + mu**2 - logvar, axis=1)))
    assert_misconception("vae.kl-batch", forgot_minus_one, "forgot-constant")
    assert_misconception("vae.kl-batch", 2 * right, "factor-of-two")
    assert_misconception("vae.kl-batch", float(np.mean(torch_kl(mu, logvar, reverse=True))), "swapped")
    assert_misconception("vae.kl-batch", right / LN2, "bits")
    assert_misconception("vae.kl-batch", right / LN10, "log10")
    assert not evaluate("vae.kl-batch", right * 1.01).passed


# --------------------------------------------------------------------------- kl-torch
def by_hand(mu, logvar):
    return 0.5 * torch.sum(torch.exp(logvar) + mu * mu - 1 - logvar, dim=-1)


def test_kl_torch_accepts_hand_written_and_reference_functions():
    assert evaluate("vae.kl-torch", by_hand).passed
    assert evaluate("vae.kl-torch", vae_kl).misconception == "klcourse-own"

    def via_distributions(mu, logvar):
        q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
        return kl_divergence(q, Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1))

    assert evaluate("vae.kl-torch", via_distributions).passed


def test_kl_torch_cases_agree_with_torch_distributions():
    for case in ex.kl_torch_cases(np.random.default_rng(12345)):
        if case.probe:
            continue  # the gradient case: its inputs are numpy, the probe makes the tensors
        mu, logvar = case.args
        np.testing.assert_allclose(vae_kl(mu, logvar).numpy(), torch_kl(mu.numpy(), logvar.numpy()),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("buggy", "name"),
    [
        (lambda mu, lv: 0.5 * torch.mean(torch.exp(lv) + mu**2 - 1 - lv, dim=-1), "mean-over-dims"),
        (lambda mu, lv: 0.5 * torch.sum(torch.exp(lv) + mu**2 - 1 - lv), "summed-over-batch"),
        (lambda mu, lv: 0.5 * torch.sum(torch.exp(2 * lv) + mu**2 - 1 - 2 * lv, dim=-1), "sigma-variance"),
        (lambda mu, lv: 0.5 * torch.sum(torch.exp(lv) + mu**2 - lv, dim=-1), "forgot-constant"),
        (lambda mu, lv: torch.sum(torch.exp(lv) + mu**2 - 1 - lv, dim=-1), "factor-of-two"),
        (lambda mu, lv: torch.as_tensor(by_hand(mu, lv).detach().numpy()), "not-differentiable"),
        (lambda mu, lv: torch.tensor(by_hand(mu, lv).numpy()), "not-differentiable"),
        (lambda mu, lv: 0.5 * torch.sum(torch.exp(lv).detach() + mu**2 - 1 - lv, dim=-1), "wrong-gradient"),
    ],
)
def test_kl_torch_names_the_mistakes(buggy, name):
    assert_misconception("vae.kl-torch", buggy, name)


def test_kl_torch_rejects_non_functions_and_crashing_functions():
    assert evaluate("vae.kl-torch", 3.0).status == "invalid"
    fb = evaluate("vae.kl-torch", lambda mu, lv: mu.numpy().sum())  # fine without grad, but wrong shape
    assert not fb.passed


# --------------------------------------------------------------------------- beta-units
def test_beta_units_choice():
    assert evaluate("vae.beta-units", "decreases").passed
    assert evaluate("vae.beta-units", " Decreases ").passed
    assert_misconception("vae.beta-units", "increases", "increases")
    assert_misconception("vae.beta-units", "stays the same", "stays the same")
    assert evaluate("vae.beta-units", "fewer").status == "invalid"


# --------------------------------------------------------------------------- rate-from-kl
def test_rate_from_kl_accepts_the_sum_in_nats():
    bits = np.array(ex.KL_PER_DIM_BITS)
    right = float(np.sum(bits / np.log2(np.e)))  # 1 nat = log2(e) bits
    assert evaluate("vae.rate-from-kl", right).passed
    assert_misconception("vae.rate-from-kl", float(bits.sum()), "bits")
    assert_misconception("vae.rate-from-kl", right / len(bits), "mean-over-dims")
    assert_misconception("vae.rate-from-kl", float(bits.sum() * np.log2(np.e)), "inverted-conversion")
    active = bits / np.log2(np.e) > 0.01
    assert_misconception("vae.rate-from-kl", float(np.sum(bits[active]) / np.log2(np.e)), "active-only")


# --------------------------------------------------------------------------- elbo-gap
def test_elbo_gap_accepts_log_evidence_minus_elbo():
    elbo = ex.EXPECTED_LOG_LIKELIHOOD - ex.KL_TERM
    right = ex.LOG_EVIDENCE - elbo
    assert right > 0
    assert evaluate("vae.elbo-gap", right).passed
    assert_misconception("vae.elbo-gap", ex.LOG_EVIDENCE - ex.EXPECTED_LOG_LIKELIHOOD, "elbo-without-kl")
    assert_misconception("vae.elbo-gap", ex.LOG_EVIDENCE - ex.EXPECTED_LOG_LIKELIHOOD - ex.KL_TERM, "kl-sign")
    assert_misconception("vae.elbo-gap", -right, "sign")
    assert_misconception("vae.elbo-gap", elbo, "is-the-elbo")
    assert_misconception("vae.elbo-gap", right / LN2, "bits")


# --------------------------------------------------------------------------- mse-sigma
def test_mse_sigma_choice():
    assert evaluate("vae.mse-sigma", "smaller").passed
    assert_misconception("vae.mse-sigma", "about the same", "about the same")
    assert_misconception("vae.mse-sigma", "larger", "larger")


def test_mse_penalty_is_bounded_where_the_kl_is_not():
    """The fact behind the 'smaller' answer: as sigma -> 0 the KL grows like -log sigma, the MSE stays < 1/2."""
    for sigma in (1e-2, 1e-4, 1e-8):
        kl = kl_1d_quad(0.0, sigma**2) if sigma > 1e-3 else 0.5 * (sigma**2 - 1) - math.log(sigma)
        assert kl > -math.log(sigma) - 0.5 - 1e-9
        assert 0.5 * (sigma - 1) ** 2 < 0.5


# --------------------------------------------------------------------------- issue 9: keepdim, 6.6 message
def test_kl_torch_keepdim_is_a_shape_sentence():
    fb = evaluate("vae.kl-torch", lambda mu, lv: 0.5 * torch.sum(torch.exp(lv) + mu**2 - 1 - lv, dim=-1,
                                                                  keepdim=True))
    assert fb.status == "invalid"
    assert "returns shape (3, 1); shape (3,) is expected on" in fb.message, fb.message


def test_kl_torch_not_differentiable_is_named():
    fb = evaluate("vae.kl-torch", lambda mu, lv: torch.tensor(by_hand(mu, lv).detach().numpy()))
    assert fb.misconception == "not-differentiable", fb.message


def test_mse_sigma_feedback_states_the_width_penalties_correctly():
    def kl_width(s):
        return 0.5 * (s**2 - 1 - math.log(s**2))

    def mse_width(s):
        return 0.5 * (s - 1) ** 2

    ratio = kl_width(0.99) / mse_width(0.99)
    assert ratio == pytest.approx(2.0, rel=0.02)  # the KL's width part is twice the MSE's near σ = 1
    message = evaluate("vae.mse-sigma", "about the same").message
    assert "agree" not in message and "second order" not in message
    assert "twice" in message and "μ parts coincide" in message


def test_rate_feedback_uses_the_chapters_active_threshold():
    from klcourse.vae_model import ACTIVE_THRESHOLD

    assert ex.ACTIVE_THRESHOLD_NATS == ACTIVE_THRESHOLD


def test_mse_sigma_larger_feedback_does_not_deny_the_mse_pull_towards_one():
    message = evaluate("vae.mse-sigma", "larger").message
    assert "nothing in the MSE penalty" not in message and "towards 1" in message


# --------------------------------------------------------------------------- iwae-direction
def test_iwae_direction_accepts_increase_and_explains_the_others():
    assert evaluate("vae.iwae-direction", "increases towards log p(x)").passed
    for wrong, word in (("decreases towards log p(x)", "Jensen"), ("stays at the ELBO", "K = 1")):
        fb = evaluate("vae.iwae-direction", wrong)
        assert not fb.passed and word in fb.message
    # E[L_K] is constant in K when q is the exact posterior: the feedback must not say "never"
    fb = evaluate("vae.iwae-direction", "stays at the ELBO")
    assert "in general" in fb.message and "exact posterior" in fb.message


def test_iwae_direction_matches_a_measured_linear_gaussian_model():
    """The expected bound of a 1-D linear-Gaussian model, by Monte Carlo: it rises towards log p(x)."""
    rng = np.random.default_rng(0)
    x, noise_var = 1.3, 0.5  # p(z) = N(0, 1), p(x|z) = N(z, noise_var): p(x) = N(0, 1 + noise_var)
    log_px = stats.norm(0, math.sqrt(1 + noise_var)).logpdf(x)
    q_mu, q_sd = 0.2, 1.0  # a poor proposal
    means = []
    for k in (1, 10, 100):
        z = rng.normal(q_mu, q_sd, size=(4000, k))
        log_w = stats.norm(z, math.sqrt(noise_var)).logpdf(x) + stats.norm.logpdf(z) - stats.norm(q_mu, q_sd).logpdf(z)
        means.append(np.mean(np.logaddexp.reduce(log_w, axis=1) - math.log(k)))
    assert means[0] < means[1] < means[2] < log_px


# --------------------------------------------------------------------------- implicit-beta
def implicit_beta_by_losses(sd):
    """beta from the losses themselves: the Gaussian NLL's quadratic coefficient, by finite differences."""
    def nll(r):  # -log N(r; 0, sd^2) as a function of the residual r (torch.distributions)
        return float(-Normal(0.0, sd).log_prob(torch.tensor(r, dtype=torch.float64)))
    h = 1e-3
    weight = (nll(h) + nll(-h) - 2 * nll(0.0)) / (2 * h * h)  # = 1 / (2 sd^2)
    return 1.0 / weight  # scale the loss so the squared error has weight 1: the KL term gets 1 / weight


def test_implicit_beta_accepts_the_value_read_off_the_gaussian_log_density():
    right = implicit_beta_by_losses(ex.DECODER_SD)
    assert abs(right - 0.02) < 1e-6
    assert evaluate("vae.implicit-beta", right).passed
    assert evaluate("vae.implicit-beta", 0.0200).passed


@pytest.mark.parametrize(("wrong", "name"), [
    (ex.DECODER_SD**2, "variance-not-twice"),
    (50.0, "inverted"),
    (100.0, "inverted-variance"),
    (0.2, "sd-not-variance"),
    (0.1, "sd-alone"),
])
def test_implicit_beta_names_the_mistakes(wrong, name):
    assert_misconception("vae.implicit-beta", wrong, name)
    # the feedback names the mistake without handing over the computation of the answer
    message = evaluate("vae.implicit-beta", wrong).message
    assert "reciprocal" not in message and "square of 0.1" not in message
    assert not re.search(r"0\.0?2\b|0\.01\b", message)


def test_implicit_beta_far_answer_does_not_reveal_the_value():
    fb = evaluate("vae.implicit-beta", 3.0)
    assert not fb.passed and fb.misconception is None and "0.02" not in fb.message
