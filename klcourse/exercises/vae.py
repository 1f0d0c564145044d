"""Exercises of chapter 6, "The KL term in a variational autoencoder" (slug ``vae``).

Every expected value is computed here, lazily, from the problem data below with
:func:`klcourse.vae_kl` or plain arithmetic; ``tests/test_exercises_vae.py`` recomputes each one by
an independent route (quadrature, ``torch.distributions``, hand formulas).

Conventions: the encoder outputs ``mu`` and ``logvar = log sigma^2`` (the log of the **variance**);
the prior is N(0, I); the KL term of one image is the **sum** over latent dimensions of
``D(q(z_j|x) || N(0, 1))`` and a loss averages it over the batch. Natural logs, nats.
"""

from __future__ import annotations

import math

import numpy as np

from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    choice,
    forgot_half,
    function,
    number,
    sigma_for_variance,
    sum_vs_mean,
    swapped,
)
from klcourse.exercises.core import WRONG, Verdict, register
from klcourse.vae import vae_kl

LN2 = math.log(2.0)

# --------------------------------------------------------------------------- problem data
#: ``vae.kl-batch``: encoder outputs for a batch of 3 images and d = 2 latent dimensions.
BATCH_MU = ((0.5, -1.0), (1.5, 0.2), (0.0, 0.8))
BATCH_LOGVAR = ((-0.4, 0.3), (-1.6, -0.2), (0.0, -0.9))

#: ``vae.rate-from-kl``: a model's KL per latent dimension, averaged over the test set, **in bits**.
KL_PER_DIM_BITS = (1.42, 0.004, 0.87, 0.0, 2.05, 0.006)

#: ``vae.elbo-gap``: one test image of a 2-D VAE (nats): log p(x) by quadrature over z, the expected
#: reconstruction log-likelihood E_q[log p(x|z)], and the KL term D(q(z|x) || p(z)).
LOG_EVIDENCE = -20.48

#: the chapter's "active unit" threshold (nats), ``klcourse.vae_model.ACTIVE_THRESHOLD`` (not imported: no torch here)
ACTIVE_THRESHOLD_NATS = 0.01
EXPECTED_LOG_LIKELIHOOD = -19.32
KL_TERM = 2.07


def _batch():
    return np.array(BATCH_MU), np.array(BATCH_LOGVAR)


# --------------------------------------------------------------------------- vae.kl-batch
def kl_batch_expected() -> float:
    """The KL term as it enters the loss: sum over latent dimensions, mean over the batch."""
    mu, logvar = _batch()
    return float(np.mean(vae_kl(mu, logvar)))


def _kl_batch_logvar_as_logsigma() -> float:
    mu, logvar = _batch()
    return float(np.mean(vae_kl(mu, 2.0 * logvar)))  # sigma^2 = exp(2 logvar): logvar read as log sigma


def _kl_batch_reverse() -> float:
    """D(N(0, I) || q): the arguments swapped."""
    mu, logvar = _batch()
    return float(np.mean(0.5 * np.sum(np.exp(-logvar) * (1.0 + mu**2) - 1.0 + logvar, axis=-1)))


register(
    "vae.kl-batch",
    title="The KL term of a batch, as it enters the loss",
    kind="number",
    checker=number(
        kl_batch_expected,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            sum_vs_mean(lambda: len(BATCH_MU) * kl_batch_expected()),
            Misconception("mean-over-dims", lambda: kl_batch_expected() / len(BATCH_MU[0]),
                          "That is the mean over the latent dimensions: the KL of a diagonal Gaussian is the "
                          "sum of the per-dimension KLs (average over the batch only)."),
            sigma_for_variance(_kl_batch_logvar_as_logsigma),
            forgot_half(lambda: kl_batch_expected() + len(BATCH_MU[0]) / 2),
            Misconception("factor-of-two", lambda: 2 * kl_batch_expected(),
                          "Twice the right value: the bracket Σ(σ² + μ² − 1 − log σ²) is multiplied by 1/2."),
            swapped(_kl_batch_reverse),
        ],
    ),
)


# --------------------------------------------------------------------------- vae.kl-torch
def kl_torch_cases(rng: np.random.Generator) -> list[Case]:
    """Cases for ``vae.kl-torch``: float64 torch tensors mu, logvar of shape (n, d) or (d,)."""
    import torch

    def tensors(mu, logvar):
        return (torch.as_tensor(np.asarray(mu, dtype=float)), torch.as_tensor(np.asarray(logvar, dtype=float)))

    cases = [
        Case("a (3, 2) batch equal to the prior (mu = 0, logvar = 0)", tensors(np.zeros((3, 2)), np.zeros((3, 2)))),
        Case("a single image, shape (4,) (no batch axis)", tensors([0.3, -1.2, 0.0, 2.0], [0.5, -0.7, 0.0, 1.1])),
        Case("a (2, 3) batch with tiny variances (logvar = -12)",
             tensors(rng.normal(size=(2, 3)), np.full((2, 3), -12.0))),
        Case("a (2, 3) batch with mu = 0 and logvar = 1", tensors(np.zeros((2, 3)), np.ones((2, 3)))),
        Case("a (3, 200) batch (many latent dimensions)", tensors(rng.normal(size=(3, 200)),
                                                                 rng.uniform(-3, 2, size=(3, 200)))),
    ]
    for i in range(3):
        cases.append(Case(f"random (5, 4) batch {i + 1}", tensors(rng.normal(0, 1.5, size=(5, 4)),
                                                                  rng.uniform(-2.5, 1.5, size=(5, 4)))))
    mu, logvar = rng.normal(0.0, 1.0, size=(1, 3)), rng.uniform(-1.0, 1.0, size=(1, 3))
    cases.append(Case("the gradients of the summed result with respect to mu and logvar (autograd)",
                      (mu, logvar), tag="gradient", probe=gradient_probe))
    return cases


class NotDifferentiable(Exception):
    """The learner's result is not connected to its inputs by autograd."""


def gradient_probe(fn, mu, logvar):
    """Call ``fn`` on float64 tensors that require grad; return [d sum / d mu, d sum / d logvar], flattened."""
    import torch

    mu_t = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    logvar_t = torch.tensor(logvar, dtype=torch.float64, requires_grad=True)
    out = fn(mu_t, logvar_t)
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        raise NotDifferentiable("the result has no grad_fn")
    grad_mu, grad_logvar = torch.autograd.grad(out.sum(), (mu_t, logvar_t), allow_unused=True)
    if grad_mu is None or grad_logvar is None:
        raise NotDifferentiable("the result does not depend on both inputs")
    return np.concatenate([grad_mu.detach().numpy().ravel(), grad_logvar.detach().numpy().ravel()])


def _np(t) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=float)


def _kl_rows(mu, logvar, *, sigma_sq=None, constant=1.0, factor=0.5):
    mu, logvar = _np(mu), _np(logvar)
    sigma_sq = np.exp(logvar) if sigma_sq is None else sigma_sq(logvar)
    return factor * np.sum(sigma_sq + mu**2 - constant - logvar, axis=-1)


def _torch_mean_over_dims(mu, logvar):
    return _np(vae_kl(mu, logvar)) / _np(mu).shape[-1]


def _torch_summed_over_batch(mu, logvar):
    return np.sum(_np(vae_kl(mu, logvar)))


def _torch_logvar_as_logsigma(mu, logvar):
    return _np(vae_kl(mu, 2 * logvar))


def _torch_forgot_constant(mu, logvar):
    return _kl_rows(mu, logvar, constant=0.0)


_NOT_DIFFERENTIABLE = ("The values are right, but the result is not connected to mu and logvar by autograd: use "
                       "torch operations only (no .numpy(), no float(), no torch.tensor(...) around the result).")


def _diagnose_gradients(j: Judged) -> Verdict | None:
    """Values on every case first; then that gradients flow: d/dmu = mu, d/dlogvar = (exp(logvar) - 1)/2."""
    failing = j.failing()
    if not failing or any(j.cases[i].tag != "gradient" for i in failing):
        return None
    got = j.outputs[failing[0]]
    if isinstance(got, str):
        return Verdict(False, _NOT_DIFFERENTIABLE, WRONG, "not-differentiable")
    return Verdict(False, "The values are right but the gradients are not: check for detach() or in-place "
                   "tricks.", WRONG, "wrong-gradient")


_kl_torch_checker = function(
    vae_kl,
    kl_torch_cases,
    rtol=1e-7,
    atol=1e-10,
    name="vae_kl_torch",
    diagnose=_diagnose_gradients,
    misconceptions=[
        Misconception("mean-over-dims", _torch_mean_over_dims,
                      "Your function averages over the latent dimensions; the KL of a diagonal Gaussian is "
                      "their sum (sum over the last axis)."),
        Misconception("summed-over-batch", _torch_summed_over_batch,
                      "Your function also sums over the batch: return one KL per image (shape (n,)) and let "
                      "the loss take the mean."),
        sigma_for_variance(_torch_logvar_as_logsigma),
        forgot_half(_torch_forgot_constant),
        Misconception("factor-of-two", lambda mu, logvar: 2 * _np(vae_kl(mu, logvar)),
                      "Twice the right value: the bracket is multiplied by 1/2."),
    ],
)


register(
    "vae.kl-torch",
    title="Implement vae_kl_torch(mu, logvar)",
    kind="function",
    checker=_kl_torch_checker,
)


# --------------------------------------------------------------------------- vae.beta-units
register(
    "vae.beta-units",
    title="Predict: active units as beta grows",
    kind="predict",
    checker=choice(
        "decreases",
        ["increases", "stays the same", "decreases"],
        explanations={
            "increases": "The other way round: β multiplies the KL term, the price of every nat a latent "
                         "dimension carries about x. The higher the price, the fewer dimensions are worth "
                         "using. (The belief that the KL term *prevents* collapse is a common mistake.)",
            "stays the same": "β changes what a nat of information costs, so it changes how many dimensions "
                              "the optimum uses: watch the KL per dimension as β grows.",
        },
    ),
)


# --------------------------------------------------------------------------- vae.rate-from-kl
def rate_expected() -> float:
    """Rate in nats = sum over all latent dimensions of the KL, converted from bits (x ln 2)."""
    return float(np.sum(KL_PER_DIM_BITS) * LN2)


register(
    "vae.rate-from-kl",
    title="The rate from a KL-per-dimension vector",
    kind="number",
    checker=number(
        rate_expected,
        sigfigs=3,
        misconceptions=[
            Misconception("mean-over-dims", lambda: rate_expected() / len(KL_PER_DIM_BITS),
                          "That is the mean over the latent dimensions; the rate is the KL term itself, the "
                          "sum over dimensions."),
            Misconception("inverted-conversion", lambda: float(np.sum(KL_PER_DIM_BITS) / LN2),
                          "The conversion is upside down: 1 bit = ln 2 nats ≈ 0.693 nats, so multiply by ln 2."),
            Misconception("active-only",
                          lambda: float(sum(k for k in KL_PER_DIM_BITS if k * LN2 > ACTIVE_THRESHOLD_NATS) * LN2),
                          "The rate counts every dimension, including the small KL of the inactive ones "
                          f"(the {ACTIVE_THRESHOLD_NATS:g}-nat threshold only decides what we call active)."),
        ],
    ),
)


# --------------------------------------------------------------------------- vae.elbo-gap
def elbo_gap_expected() -> float:
    """D(q(z|x) || p(z|x)) = log p(x) - ELBO, with ELBO = E_q[log p(x|z)] - D(q(z|x) || p(z))."""
    return LOG_EVIDENCE - (EXPECTED_LOG_LIKELIHOOD - KL_TERM)


register(
    "vae.elbo-gap",
    title="How far is the encoder from the true posterior?",
    kind="number",
    checker=number(
        elbo_gap_expected,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            Misconception("elbo-without-kl", lambda: LOG_EVIDENCE - EXPECTED_LOG_LIKELIHOOD,
                          "That treats E_q[log p(x|z)] as the ELBO; the ELBO also subtracts the KL term "
                          "D(q(z|x) ‖ p(z))."),
            Misconception("kl-sign", lambda: LOG_EVIDENCE - (EXPECTED_LOG_LIKELIHOOD + KL_TERM),
                          "The KL term is subtracted in the ELBO, not added: ELBO = E_q[log p(x|z)] − D(q ‖ p(z))."),
            Misconception("sign", lambda: -elbo_gap_expected(),
                          "The sign is flipped: the gap is log p(x) − ELBO, which Gibbs' inequality makes ≥ 0."),
            Misconception("is-the-elbo", lambda: EXPECTED_LOG_LIKELIHOOD - KL_TERM,
                          "That is the ELBO itself; the question asks for the gap between log p(x) and it."),
        ],
    ),
)


# --------------------------------------------------------------------------- vae.mse-sigma
register(
    "vae.mse-sigma",
    title="Predict: what does the MSE penalty do to sigma?",
    kind="predict",
    checker=choice(
        "smaller",
        ["smaller", "about the same", "larger"],
        explanations={
            "about the same": "Near the prior only the μ parts coincide (½μ² in both). The width parts differ: the "
                              "KL's is about (σ − 1)², twice the MSE's ½(σ − 1)², and as σ → 0 the MSE's stays "
                              "below ½ while the KL's grows like −log σ. Which σ does the reconstruction term want?",
            "larger": "A larger σ adds noise to z and makes reconstructions worse. Both penalties pull σ towards 1, "
                      "but not equally hard: compare what each one charges as σ → 0.",
        },
    ),
)


# --------------------------------------------------------------------------- vae.iwae-direction
register(
    "vae.iwae-direction",
    title="Predict: the importance-weighted bound as K grows",
    kind="predict",
    checker=choice(
        "increases towards log p(x)",
        ["increases towards log p(x)", "decreases towards log p(x)", "stays at the ELBO"],
        explanations={
            "decreases towards log p(x)": "That would make L_K an upper bound. The average of K weights "
                                          "p(x, z_k) / q(z_k | x) is an unbiased estimate of p(x), and the log "
                                          "is concave, so by Jensen E[L_K] ≤ log p(x) for every K: it "
                                          "approaches log p(x) from below.",
            "stays at the ELBO": "Only K = 1 is the ELBO in general; E[L_K] stays constant only if q is "
                                 "already the exact posterior. Averaging more weights inside the log makes the "
                                 "estimate of p(x) less noisy, and Jensen's gap E[log] ≤ log E shrinks with "
                                 "the noise.",
        },
    ),
)


# --------------------------------------------------------------------------- vae.implicit-beta
#: ``vae.implicit-beta``: the Gaussian decoder's **standard deviation** s (its variance is s**2).
DECODER_SD = 0.1


def implicit_beta_expected() -> float:
    """beta = 2 s^2: -log N(x; f, s^2 I) = ||x - f||^2 / (2 s^2) + const; multiply the loss by 2 s^2."""
    return 2.0 * DECODER_SD**2


register(
    "vae.implicit-beta",
    title="The β hidden in a Gaussian decoder",
    kind="number",
    checker=number(
        implicit_beta_expected,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("variance-not-twice", lambda: DECODER_SD**2,
                          "That is s², the variance. The squared error enters −log N(x; f, s²I) as "
                          "‖x − f‖² / (2s²): multiplying the whole loss by 2s² gives the factor in front of "
                          "the KL term."),
            Misconception("inverted", lambda: 1.0 / (2.0 * DECODER_SD**2),
                          "That is the weight 1/(2s²) of the squared error relative to the KL term. The "
                          "question fixes the squared error's weight at 1 and asks for the weight of the KL "
                          "term instead."),
            Misconception("inverted-variance", lambda: 1.0 / DECODER_SD**2,
                          "That is 1/s², upside down and missing the factor 2: the squared error is divided "
                          "by 2s², so β = 2s² relative to a unit-weight squared error."),
            Misconception("sd-not-variance", lambda: 2.0 * DECODER_SD,
                          "DECODER_SD is the standard deviation s, and the formula needs the variance s²: "
                          "the standard deviation was used where its square belongs."),
            Misconception("sd-alone", lambda: DECODER_SD,
                          "That is s itself. The Gaussian's log-density divides the squared error by 2s², the "
                          "variance doubled."),
        ],
    ),
)
