"""Monte Carlo estimators of KL from samples (chapter 9).

Given samples ``x_1..x_n ~ Q`` and the log-densities ``log q(x_i)`` and ``log p(x_i)`` of
*both* distributions at those samples, estimate the reverse-style divergence

    D(Q || P) = E_{x ~ Q}[log q(x) - log p(x)]

(the expectation is under Q, the distribution the samples come from; in RLHF Q is the
policy and P the reference model).  With ``log_r = log p(x) - log q(x)`` and
``r = p(x)/q(x)`` (so ``E_Q[r] = 1``), Schulman (2020) compares three estimators:

=====  ==========================  =========  ====================================
name   per-sample value            unbiased   notes
=====  ==========================  =========  ====================================
k1     ``-log_r``                  yes        high variance; individual values < 0
k2     ``log_r**2 / 2``            no         low variance, >= 0; bias O(D**(3/2))
k3     ``(r - 1) - log_r``         yes        low variance, every value >= 0
=====  ==========================  =========  ====================================

``k3`` adds the control variate ``r - 1`` (mean zero under Q) to ``k1``; since
``log x <= x - 1`` each of its terms is non-negative.  It is computed as
``expm1(log_r) - log_r`` with a series near 0, so it keeps full relative accuracy when
the two distributions are nearly equal (where ``exp(log_r) - 1 - log_r`` would return
rounding noise).

Gradients.  The *value* of each estimator is about ``D(Q || P)``, but its *gradient* need not be
the gradient of ``D(Q || P)``.  Let ``Q = Q_theta`` depend on parameters, draw ``x ~ Q_theta``,
and differentiate the per-sample value with the draws held fixed (what autograd does when
``log_q`` is computed from sampled tokens).  Then, in expectation,

=====  ==================================================================
k1     ``E[grad k1] = 0``                         (the score has mean zero)
k2     ``E[grad k2] = grad D(Q_theta || P)``      (the reverse KL: correct, on-policy)
k3     ``E[grad k3] = grad D(P || Q_theta)``      (the *other* direction)
=====  ==================================================================

so "k3 in the loss" (as in GRPO-style training) optimises ``D(P || Q)``, not the ``D(Q || P)`` it
reports.  :func:`mc_kl` therefore refuses to return a differentiable value unless told what
gradient is wanted (``grad=``); see its docstring.  The chapter verifies every line of this table
by exact enumeration.

References
----------
Schulman, J. (2020). Approximating KL divergence. http://joschu.net/blog/kl-approx.html
Shao, Z. et al. (2024). DeepSeekMath (GRPO puts k3 with ``r = pi_ref / pi_theta`` in the loss).
arXiv:2402.03300.
Cover, T. M. & Thomas, J. A. (2006). *Elements of Information Theory*, 2nd ed., Wiley, ch. 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from klcourse.gaussians import expm1mx

__all__ = ["mc_kl"]

ESTIMATORS = ("k1", "k2", "k3")
GRAD_MODES = ("detach", "pathwise", "reverse")


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _per_sample(log_r, estimator: str, xp):
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r * log_r
    return expm1mx(log_r, xp=xp)


def _check_values(bad_nan: bool, bad_q: bool, bad_p: bool) -> None:
    if bad_nan:
        raise ValueError("log_q / log_p contain NaN")
    if bad_q:
        raise ValueError("log_q must be finite: the samples are drawn from Q, so q(x) > 0")
    if bad_p:
        raise ValueError("log_p contains +inf; log-densities must be < inf")


def _check_grad_mode(grad) -> None:
    if grad is not None and (not isinstance(grad, str) or grad not in GRAD_MODES):
        raise ValueError(f"unknown grad={grad!r}; use one of {', '.join(map(repr, GRAD_MODES))} (or None)")


_GRAD_HELP = (
    "{names} grad, so the result of mc_kl would be differentiable, and the gradient of an "
    "estimator is not the gradient of the KL it estimates: with the draws x ~ Q held fixed, the expected "
    "gradient through log_q is 0 for k1, grad D(Q||P) for k2 and grad D(P||Q) (the other direction) for "
    "k3. Say what you want with grad=: 'detach' (a value to log or to stop on), 'reverse' (an unbiased "
    "gradient of D(Q||P), draws from the current Q) or 'pathwise' (differentiate the estimator as written)."
)


def _mc_kl_torch(log_q, log_p, estimator: str, grad=None):
    import torch

    ref = log_q if _is_torch(log_q) else log_p
    dtype = ref.dtype if ref.is_floating_point() else torch.float64
    lq = torch.as_tensor(log_q, dtype=dtype, device=ref.device)
    lp = torch.as_tensor(log_p, dtype=dtype, device=ref.device)
    if lq.shape != lp.shape:
        raise ValueError(f"shape mismatch: log_q has shape {tuple(lq.shape)}, log_p has shape {tuple(lp.shape)}")
    if lq.numel() == 0:
        raise ValueError("need at least one sample")
    _check_values(
        bool(torch.isnan(lq).any() or torch.isnan(lp).any()),
        bool(torch.isinf(lq).any()),
        bool(torch.isposinf(lp).any()),
    )
    needs = [name for name, t in (("log_q", lq), ("log_p", lp)) if t.requires_grad]
    if grad is None and needs and torch.is_grad_enabled():
        raise ValueError(_GRAD_HELP.format(names="log_q and log_p require" if len(needs) == 2
                                           else f"{needs[0]} requires"))
    if grad == "detach":
        lq, lp = lq.detach(), lp.detach()
    value = _per_sample(lp - lq, estimator, torch).mean()
    if grad != "reverse":
        return value
    # score-function surrogate: its value is 0, its gradient mean((log q - log p) grad log q - grad log p),
    # an unbiased estimate of grad D(Q || P) when the draws come from the current Q
    finite = torch.isfinite(lp)  # log p = -inf makes D = inf: those draws get no gradient (no inf - inf)
    k1 = torch.where(finite, (lq - lp).detach(), torch.zeros_like(lq))
    surrogate = (k1 * lq - torch.where(finite, lp, torch.zeros_like(lp))).mean()
    return value.detach() + (surrogate - surrogate.detach())


def mc_kl(log_q, log_p, *, estimator="k3", grad=None):
    r"""Monte Carlo estimate of :math:`D(Q \| P)` from samples :math:`x_i \sim Q`.

    .. math::

        D(Q \| P) = \mathbb E_{x \sim Q}\Big[\log\frac{q(x)}{p(x)}\Big]
        \approx \frac1n \sum_{i=1}^n k(\log r_i),
        \qquad \log r_i = \log p(x_i) - \log q(x_i),

    with the per-sample value ``k`` of the chosen ``estimator`` (below).

    Parameters
    ----------
    log_q : array_like or torch.Tensor
        ``log q(x_i)`` at samples drawn from Q (finite).
    log_p : array_like or torch.Tensor, same shape
        ``log p(x_i)`` at the same samples.  ``-inf`` (a sample outside the support of P)
        is allowed and makes the estimate ``inf``, as ``D(Q || P)`` then is.
    estimator : {"k1", "k2", "k3"}, optional
        ``k1 = mean(-log_r)``, ``k2 = mean(log_r**2 / 2)``,
        ``k3 = mean(expm1(log_r) - log_r)`` with ``log_r = log_p - log_q``
        (default ``"k3"``: unbiased, low variance, never negative).
    grad : {None, "detach", "pathwise", "reverse"}, optional
        What the gradient of the result is, for torch input (ignored for numpy input).  With
        ``None`` (default) a ``ValueError`` is raised if an input requires grad, because the
        gradient of an estimator is not the gradient of the divergence (Notes):

        * ``"detach"``: no gradient; the value for logging or early stopping.
        * ``"pathwise"``: autograd through the per-sample values with the draws held fixed.
        * ``"reverse"``: the value of ``estimator``, with the gradient
          ``mean((log_q - log_p) * grad log_q - grad log_p)``, an unbiased estimate of
          :math:`\nabla D(Q \| P)` when the draws come from the current Q (score-function form).

    Returns
    -------
    float or torch.Tensor
        The sample mean over all entries.  If either input is a ``torch.Tensor`` the result
        is a 0-d tensor on the same device (differentiable as ``grad`` says), otherwise a Python float.

    Raises
    ------
    ValueError
        Unknown estimator or ``grad``, shape mismatch, no samples, NaN, ``log_q`` not finite,
        ``log_p = +inf``; an input that requires grad while ``grad`` is None.

    Notes
    -----
    ``k1`` and ``k3`` are unbiased; ``k2`` is biased (its mean agrees with KL to second order
    when Q is close to P).  Individual ``k1`` values are negative whenever ``p(x) > q(x)``, so
    its average can be negative for small samples.

    Gradients.  Let ``log_q = log q_theta(x_i)`` with draws ``x_i ~ Q_theta`` held fixed.  With
    ``grad="pathwise"`` the expected gradient in ``theta`` is ``0`` for ``k1``,
    :math:`\nabla D(Q_\theta \| P)` for ``k2`` (draws from the current Q only) and
    :math:`\nabla D(P \| Q_\theta)` for ``k3`` -- the forward, not the reverse, divergence (with
    :math:`r = p/q`: :math:`\nabla k_3 = (1 - r)\nabla \log q` and :math:`\mathbb E_Q[(1-r)\nabla\log q]
    = -\sum_x p\,\nabla \log q = \nabla H(P, Q_\theta)`).  For parameters of P only (the draws do
    not depend on them) ``k1`` and ``k3`` give unbiased gradients of :math:`D(Q \| P)`, ``k2`` does not.
    ``grad="reverse"`` is unbiased for both.

    References
    ----------
    Schulman (2020), "Approximating KL divergence".
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {', '.join(map(repr, ESTIMATORS))}")
    _check_grad_mode(grad)
    if _is_torch(log_q) or _is_torch(log_p):
        return _mc_kl_torch(log_q, log_p, estimator, grad)
    lq, lp = (_as_float(x, name) for x, name in ((log_q, "log_q"), (log_p, "log_p")))
    if lq.shape != lp.shape:
        raise ValueError(f"shape mismatch: log_q has shape {lq.shape}, log_p has shape {lp.shape}")
    if lq.size == 0:
        raise ValueError("need at least one sample")
    _check_values(bool(np.isnan(lq).any() or np.isnan(lp).any()), bool(np.isinf(lq).any()),
                  bool(np.isposinf(lp).any()))
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.mean(_per_sample(lp - lq, estimator, np)))


def _as_float(x, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from exc


# --------------------------------------------------------------------------- chapter 9: studies and demos
# Everything below is numpy-only (no torch), for the notebook book/09_estimation.ipynb.


def kl_estimates(log_q, log_p, *, estimator="k3", axis=-1):
    r"""Many independent Monte Carlo estimates of :math:`D(Q \| P)` at once.

    :func:`mc_kl` averages over *every* entry; this averages the per-sample values of
    ``estimator`` along ``axis`` only, so log-densities of shape ``(n_reps, n_samples)`` give
    ``n_reps`` estimates, each from its own ``n_samples`` draws ``x ~ Q``.

    Parameters
    ----------
    log_q, log_p : array_like, same shape
        ``log q(x)`` and ``log p(x)`` at samples drawn from Q (numpy only).
    estimator : {"k1", "k2", "k3"}
        With ``log_r = log_p - log_q``: ``k1 = -log_r``, ``k2 = log_r**2 / 2``,
        ``k3 = expm1(log_r) - log_r`` (see :func:`mc_kl`).
    axis : int, optional
        The sample axis (default last).

    Returns
    -------
    numpy.ndarray or float
        The estimates; the input shape without ``axis``.  ``inf`` where a sample has ``log p = -inf``.

    Raises
    ------
    ValueError
        As :func:`mc_kl`: unknown estimator, shape mismatch, no samples, NaN, ``log_q`` not
        finite, ``log_p = +inf``.

    References
    ----------
    Schulman (2020), "Approximating KL divergence".
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {', '.join(map(repr, ESTIMATORS))}")
    lq, lp = _log_pair(log_q, log_p, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.mean(_per_sample(lp - lq, estimator, np), axis=axis)


@dataclass(frozen=True)
class EstimatorStudy:
    r"""Repeated Monte Carlo estimates of one divergence :math:`D(Q \| P)` by k1, k2 and k3.

    Attributes
    ----------
    exact : float
        The true :math:`D(Q \| P)` (nats).
    n_samples : int
        Samples per estimate.
    estimates : dict
        ``{name: array of shape (n_reps,)}``: one averaged estimate per repetition.
    single_std : dict
        ``{name: float}``: standard deviation of a *single-sample* value (over all draws).
    single_negative : dict
        ``{name: float}``: fraction of single-sample values below 0.
    """

    exact: float
    n_samples: int
    estimates: dict
    single_std: dict
    single_negative: dict

    @property
    def n_reps(self) -> int:
        return len(next(iter(self.estimates.values())))

    def bias(self, name: str) -> float:
        """Mean of the estimates minus the exact value (its Monte Carlo error is ``std / sqrt(n_reps)``)."""
        return float(np.mean(self.estimates[name]) - self.exact)

    def std(self, name: str) -> float:
        """Standard deviation of the averaged estimates over the repetitions."""
        return float(np.std(self.estimates[name], ddof=1))

    def negative_fraction(self, name: str) -> float:
        """Fraction of the averaged estimates that are negative."""
        return float(np.mean(self.estimates[name] < 0))

    def summary(self) -> dict:
        """``{name: {...}}`` with mean, bias, std, their ratios to ``exact`` and the negative fractions."""
        return {
            name: {
                "mean": float(np.mean(values)),
                "bias": self.bias(name),
                "std": self.std(name),
                "relative_bias": self.bias(name) / self.exact,
                "relative_std": self.std(name) / self.exact,
                "single_relative_std": self.single_std[name] / self.exact,
                "single_negative": self.single_negative[name],
                "negative": self.negative_fraction(name),
            }
            for name, values in self.estimates.items()
        }


def estimator_study(log_q, log_p, exact: float) -> EstimatorStudy:
    r"""Compare k1, k2 and k3 on repeated draws.

    Parameters
    ----------
    log_q, log_p : array_like, shape (n_reps, n_samples)
        Log-densities at ``n_reps`` independent batches of ``n_samples`` draws from Q.
    exact : float
        The true :math:`D(Q \| P)`, e.g. from :func:`klcourse.kl_normal`.

    Returns
    -------
    EstimatorStudy
    """
    lq, lp = _as_float(log_q, "log_q"), _as_float(log_p, "log_p")
    if lq.ndim != 2:
        raise ValueError(f"log_q and log_p must have shape (n_reps, n_samples), got {lq.shape}")
    estimates = {name: kl_estimates(lq, lp, estimator=name) for name in ESTIMATORS}
    single = {name: _per_sample(lp - lq, name, np) for name in ESTIMATORS}
    return EstimatorStudy(
        exact=float(exact),
        n_samples=lq.shape[1],
        estimates=estimates,
        single_std={name: float(np.std(v)) for name, v in single.items()},
        single_negative={name: float(np.mean(v < 0)) for name, v in single.items()},
    )


def gaussian_estimator_study(mu_q, sigma_q, mu_p, sigma_p, *, n_samples: int = 100, n_reps: int = 2000,
                             seed: int = 0) -> EstimatorStudy:
    r"""k1, k2 and k3 for :math:`D(N(\mu_q, \sigma_q^2) \| N(\mu_p, \sigma_p^2))` from samples of Q.

    Draws an ``(n_reps, n_samples)`` array ``x ~ Q`` in one go (seeded), evaluates both
    log-densities there and compares every estimator with the closed form
    :func:`klcourse.kl_normal` (``sigma_q``, ``sigma_p`` are standard deviations).

    Examples
    --------
    Schulman's (2020) close pair, true KL 0.005 nats:

    >>> study = gaussian_estimator_study(0.0, 1.0, 0.1, 1.0)
    >>> round(study.exact, 6)
    0.005
    """
    from klcourse.gaussians import kl_normal

    if n_samples < 1 or n_reps < 2:
        raise ValueError("need n_samples >= 1 and n_reps >= 2")
    exact = kl_normal(mu_q, sigma_q, mu_p, sigma_p)  # also validates the parameters
    x = np.random.default_rng(seed).normal(mu_q, sigma_q, size=(n_reps, n_samples))
    return estimator_study(_normal_logpdf(x, mu_q, sigma_q), _normal_logpdf(x, mu_p, sigma_p), exact)


def gaussian_shift_variances(delta) -> dict:
    r"""Exact variances of one k1, k2 and k3 value for :math:`Q = N(0, 1)`, :math:`P = N(\delta, 1)`.

    Under Q, :math:`\log r = \delta x - \delta^2/2 \sim N(-\delta^2/2, \delta^2)` and :math:`r` is
    log-normal with mean 1, so (Stein's lemma gives :math:`\mathrm{Cov}(r, \log r) = \delta^2`)

    .. math::
        \mathrm{Var}\,k_1 = \delta^2, \qquad
        \mathrm{Var}\,k_2 = \frac{\delta^4}{2} + \frac{\delta^6}{4}, \qquad
        \mathrm{Var}\,k_3 = \mathrm{Var}\,r + \mathrm{Var}\log r - 2\,\mathrm{Cov}(r, \log r)
        = e^{\delta^2} - 1 - \delta^2 .

    The ratio ``var["k1"] / var["k3"]`` is how many times as many samples k1 needs for the precision
    of k3.  ``k3`` is computed as ``expm1(d) - d`` with a series for small ``d = delta**2``.

    Parameters
    ----------
    delta : float
        The mean shift (any real number).

    Returns
    -------
    dict
        ``{"k1": float, "k2": float, "k3": float}`` in nats².
    """
    d = float(delta)
    if not np.isfinite(d):
        raise ValueError(f"delta must be a finite number, got {delta!r}")
    d2 = d * d
    return {"k1": d2, "k2": d2**2 / 2 + d2**3 / 4, "k3": float(expm1mx(d2))}


def _normal_logpdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)


# --------------------------------------------------------------------------- a policy under a KL penalty
def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _policy_problem(ref_probs, rewards, beta):
    from klcourse._validate import as_float_array, probability_array

    ref = probability_array(ref_probs, "ref_probs")
    r = as_float_array(rewards, "rewards")
    if ref.ndim != 1 or r.shape != ref.shape:
        raise ValueError(f"ref_probs and rewards must be vectors of the same length, got {ref.shape} and {r.shape}")
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    return ref, r, float(beta)


def kl_regularised_optimum(ref_probs, rewards, beta):
    r"""The policy maximising :math:`\mathbb E_\pi[r] - \beta\, D(\pi \| \pi_{\text{ref}})`.

    .. math:: \pi^*(a) = \frac{\pi_{\text{ref}}(a)\, e^{r(a)/\beta}}{Z}, \qquad
              Z = \sum_a \pi_{\text{ref}}(a)\, e^{r(a)/\beta},

    and the maximum is :math:`\beta \log Z`, since for every policy
    :math:`\mathbb E_\pi[r] - \beta D(\pi\|\pi_{\text{ref}}) = \beta \log Z - \beta D(\pi \| \pi^*)`.
    Computed in log space (no overflow for small ``beta``).

    Parameters
    ----------
    ref_probs : array_like, shape (K,)
        The reference policy (sums to 1; actions with probability 0 keep probability 0).
    rewards : array_like, shape (K,)
        Reward of each action.
    beta : float
        Strength of the KL penalty, > 0 (small beta: greedy; large beta: stay at the reference).

    Returns
    -------
    numpy.ndarray, shape (K,)

    References
    ----------
    Ouyang et al. (2022); the identity above is Gibbs' inequality (Cover & Thomas 2006, thm 2.6.3).
    """
    ref, r, beta = _policy_problem(ref_probs, rewards, beta)
    with np.errstate(divide="ignore"):
        return np.exp(_log_softmax(np.log(ref) + r / beta))


def kl_regularised_objective(probs, ref_probs, rewards, beta):
    r"""The KL-regularised objective :math:`J(\pi) = \sum_a \pi(a) r(a) - \beta\, D(\pi \| \pi_{\text{ref}})`.

    Parameters
    ----------
    probs : array_like, shape (K,) or (..., K)
        One policy or a batch of policies (each sums to 1).
    ref_probs, rewards, beta
        As in :func:`kl_regularised_optimum`.

    Returns
    -------
    float or numpy.ndarray
        In reward units; the KL is in nats.  ``-inf`` if a policy puts mass where ``ref_probs`` is 0.
    """
    from klcourse.divergences import kl_divergence

    ref, r, beta = _policy_problem(ref_probs, rewards, beta)
    return np.asarray(probs, dtype=float) @ r - beta * kl_divergence(probs, ref)


def kl_regularised_gradient(logits, ref_probs, rewards, beta):
    r"""Exact gradient of :math:`J(\pi_\theta)` in the logits, :math:`\pi_\theta = \mathrm{softmax}(\theta)`.

    With :math:`f(a) = r(a) - \beta \log(\pi(a)/\pi_{\text{ref}}(a))` (the KL-penalised reward),

    .. math:: \partial J / \partial \theta_j = \pi(j)\,\big(f(j) - \mathbb E_\pi[f]\big);

    the derivative of :math:`\log \pi` inside ``f`` averages to zero under :math:`\pi` and drops out.
    ``ref_probs`` must be strictly positive.
    """
    ref, r, beta = _policy_problem(ref_probs, rewards, beta)
    log_pi = _log_softmax(np.asarray(logits, dtype=float))
    f = r - beta * (log_pi - np.log(ref))
    pi = np.exp(log_pi)
    return pi * (f - pi @ f)


def _sampled_gradient(actions, log_pi, log_ref, rewards, beta):
    """REINFORCE estimate of the gradient from one batch, with the batch mean as baseline."""
    pi = np.exp(log_pi)
    f = rewards[actions] - beta * (log_pi[actions] - log_ref[actions])  # KL-penalised reward per sample
    one_hot = np.eye(len(pi))[actions]
    return np.mean((f - f.mean())[:, None] * (one_hot - pi), axis=0)


@dataclass(frozen=True)
class PolicyRun:
    r"""Trajectory of a categorical policy trained under a KL penalty (see :func:`train_kl_regularised_policy`).

    Attributes
    ----------
    probs : ndarray, shape (T + 1, K)
        :math:`\pi_0 = \pi_{\text{ref}}, \pi_1, \dots, \pi_T` (T = steps taken).
    exact_kl : ndarray, shape (T + 1,)
        :math:`D(\pi_t \| \pi_{\text{ref}})` in nats, exact.
    estimates : dict
        ``{"k1"|"k2"|"k3": ndarray (T + 1,)}``: the same KL estimated from ``batch_size`` actions
        sampled from :math:`\pi_t` (``log_q = log pi_t(a)``, ``log_p = log pi_ref(a)``).
    objective : ndarray, shape (T + 1,)
        :math:`J(\pi_t)`.
    kl_to_optimum : ndarray, shape (T + 1,)
        :math:`D(\pi_t \| \pi^*)` in nats.
    optimum : ndarray, shape (K,)
        :math:`\pi^*` from :func:`kl_regularised_optimum`.
    stopped_at : int or None
        The step at which early stopping fired, or None.
    """

    probs: np.ndarray
    exact_kl: np.ndarray
    estimates: dict
    objective: np.ndarray
    kl_to_optimum: np.ndarray
    optimum: np.ndarray
    stopped_at: int | None


def train_kl_regularised_policy(ref_probs, rewards, beta, *, lr: float = 4.0, n_steps: int = 200,
                                batch_size: int = 64, gradient: str = "exact", kl_target: float | None = None,
                                stop_estimator: str = "k3", seed: int = 0) -> PolicyRun:
    r"""Gradient ascent on :math:`J(\pi) = \mathbb E_\pi[r] - \beta D(\pi \| \pi_{\text{ref}})` over softmax logits.

    Starts at :math:`\pi_0 = \pi_{\text{ref}}`. At every step it samples ``batch_size`` actions
    from the current policy :math:`\pi_t`, estimates :math:`D(\pi_t \| \pi_{\text{ref}})` from them
    with k1, k2 and k3 (samples from :math:`\pi_t`, i.e. ``Q = pi_t``, ``P = pi_ref``), records the
    exact value, and updates the logits by ``lr`` times the gradient.

    Parameters
    ----------
    ref_probs, rewards, beta
        As in :func:`kl_regularised_optimum`; ``ref_probs`` strictly positive.
    lr : float
        Step size on the logits.
    n_steps : int
        Number of updates (the run records ``n_steps + 1`` policies unless stopped early).
    batch_size : int
        Actions sampled per step.
    gradient : {"exact", "sampled"}
        ``"exact"``: :func:`kl_regularised_gradient`; ``"sampled"``: the REINFORCE estimate from the
        same batch, with the KL-penalised reward ``r(a) - beta * log(pi(a) / pi_ref(a))`` per sample
        (the RLHF recipe) and the batch mean as baseline.
    kl_target : float, optional
        Early stopping: stop as soon as the ``stop_estimator`` estimate exceeds ``kl_target`` nats
        (the policy that crossed it is the last one recorded).
    stop_estimator : {"k1", "k2", "k3"}
    seed : int
        Seeds the sampling of actions.

    Returns
    -------
    PolicyRun
    """
    from klcourse.divergences import kl_divergence

    ref, r, beta = _policy_problem(ref_probs, rewards, beta)
    if np.any(ref <= 0):
        raise ValueError("ref_probs must be strictly positive (the policy starts at the reference)")
    if gradient not in ("exact", "sampled"):
        raise ValueError(f"gradient must be 'exact' or 'sampled', got {gradient!r}")
    if stop_estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {stop_estimator!r}; use one of {', '.join(map(repr, ESTIMATORS))}")
    if n_steps < 0 or batch_size < 1:
        raise ValueError("need n_steps >= 0 and batch_size >= 1")
    rng = np.random.default_rng(seed)
    log_ref = np.log(ref)
    logits = log_ref.copy()
    probs, estimates, stopped_at = [], {name: [] for name in ESTIMATORS}, None
    for t in range(n_steps + 1):
        log_pi = _log_softmax(logits)
        actions = rng.choice(len(ref), size=batch_size, p=np.exp(log_pi))
        probs.append(np.exp(log_pi))
        for name in ESTIMATORS:
            estimates[name].append(mc_kl(log_pi[actions], log_ref[actions], estimator=name))
        if kl_target is not None and estimates[stop_estimator][-1] > kl_target:
            stopped_at = t
            break
        if gradient == "exact":
            logits = logits + lr * kl_regularised_gradient(logits, ref, r, beta)
        else:
            logits = logits + lr * _sampled_gradient(actions, log_pi, log_ref, r, beta)
    probs = np.array(probs)
    optimum = kl_regularised_optimum(ref, r, beta)
    return PolicyRun(
        probs=probs,
        exact_kl=np.asarray(kl_divergence(probs, ref)),
        estimates={name: np.array(v) for name, v in estimates.items()},
        objective=np.asarray(kl_regularised_objective(probs, ref, r, beta)),
        kl_to_optimum=np.asarray(kl_divergence(probs, optimum)),
        optimum=optimum,
        stopped_at=stopped_at,
    )


def kl_estimates_along(probs, ref_probs, *, batch_size: int = 64, n_reps: int = 500, seed: int = 0) -> dict:
    r"""Re-estimate :math:`D(\pi_t \| \pi_{\text{ref}})` along a fixed trajectory, ``n_reps`` times per step.

    Parameters
    ----------
    probs : array_like, shape (T, K)
        The policies :math:`\pi_t`, e.g. ``PolicyRun.probs``.
    ref_probs : array_like, shape (K,)
    batch_size : int
        Actions drawn from :math:`\pi_t` per estimate (``Q = pi_t``, ``P = pi_ref``).
    n_reps : int
        Independent batches per step.
    seed : int

    Returns
    -------
    dict
        ``{"k1"|"k2"|"k3": ndarray (n_reps, T)}``: the spread an early-stopping rule sees.
    """
    from klcourse._validate import probability_array

    path = probability_array(probs, "probs")
    ref = probability_array(ref_probs, "ref_probs")
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        log_path, log_ref = np.log(path), np.log(ref)
    out = {name: np.empty((n_reps, len(path))) for name in ESTIMATORS}
    for t, (pi, log_pi) in enumerate(zip(path, log_path, strict=True)):
        actions = rng.choice(len(ref), size=(n_reps, batch_size), p=pi)
        for name in ESTIMATORS:
            out[name][:, t] = kl_estimates(log_pi[actions], log_ref[actions], estimator=name)
    return out


def first_exceedance(values, target: float):
    """Index of the first entry along the last axis above ``target``; -1 where none is.

    With ``-1`` meaning "never stopped", ``exact_kl[first_exceedance(est, target)]`` is the KL a run ends
    with, whether or not the early-stopping rule fired.
    """
    above = np.asarray(values, dtype=float) > target
    return np.where(above.any(axis=-1), above.argmax(axis=-1), -1)


__all__ += [
    "EstimatorStudy",
    "PolicyRun",
    "control_variate_estimates",
    "estimator_study",
    "first_exceedance",
    "fitted_coefficient",
    "forward_kl_estimates",
    "gaussian_estimator_study",
    "gaussian_shift_control_variate",
    "gaussian_shift_variances",
    "kl_estimates",
    "kl_estimates_along",
    "kl_regularised_gradient",
    "kl_regularised_objective",
    "kl_regularised_optimum",
    "train_kl_regularised_policy",
]


# --------------------------------------------------------------------------- chapter 9: importance sampling
def _r_log_r_cv(log_r: np.ndarray) -> np.ndarray:
    r"""``g(L) = r log r - (r - 1)`` with ``r = e^L``: ``L e^L - expm1(L)``, >= 0, accurate near ``L = 0``.

    Near 0 the two terms cancel to first order, so for ``|L| < 1/4`` the series
    :math:`g(L) = \sum_{m \ge 2} (m - 1) L^m / m!` is summed (20 terms: truncation below 1e-17 relative).
    ``L = -inf`` (``p = 0``) gives ``g = 1``; a very large ``L`` gives ``inf``.
    """
    out = np.empty_like(log_r)
    small = np.abs(log_r) < 0.25
    ls = log_r[small]
    term, total = ls * 0 + 1.0, ls * 0
    for m in range(1, 21):
        term = term * ls / m  # L^m / m!
        if m >= 2:
            total = total + (m - 1) * term
    out[small] = total
    big = log_r[~small]
    with np.errstate(over="ignore", invalid="ignore"):
        values = big * np.exp(big) - np.expm1(big)
    values[np.isneginf(big)] = 1.0
    out[~small] = values
    return out


def _log_pair(log_q, log_p, axis) -> tuple[np.ndarray, np.ndarray]:
    lq, lp = _as_float(log_q, "log_q"), _as_float(log_p, "log_p")
    if lq.shape != lp.shape:
        raise ValueError(f"shape mismatch: log_q has shape {lq.shape}, log_p has shape {lp.shape}")
    if lq.ndim == 0 or lq.shape[axis] == 0:
        raise ValueError("need at least one sample along the sample axis")
    _check_values(bool(np.isnan(lq).any() or np.isnan(lp).any()), bool(np.isinf(lq).any()),
                  bool(np.isposinf(lp).any()))
    return lq, lp


def forward_kl_estimates(log_q, log_p, *, self_normalised: bool = False, axis=-1):
    r"""Estimates of :math:`D(P \| Q)` — the *other* direction — from draws :math:`x \sim Q`, by importance sampling.

    With :math:`r = p(x)/q(x)`, :math:`\mathbb E_Q[r f(x)] = \mathbb E_P[f(x)]`, so

    .. math::

        D(P \| Q) = \mathbb E_Q[r \log r] = \mathbb E_Q\big[r \log r - (r - 1)\big],

    because the control variate :math:`r - 1` has mean 0 under Q.  Each term of the second form is
    :math:`\ge 0` (:math:`t \log t \ge t - 1`), so the estimate is **unbiased and never negative** —
    the mirror image of ``k3`` for :math:`D(Q \| P)`.  Its variance is finite only when
    :math:`\mathbb E_Q[r^2 \log^2 r] < \infty` (for Gaussians: :math:`\sigma_P^2 < 2\sigma_Q^2`).

    ``self_normalised=True`` is for a ``log_p`` known only **up to an additive constant** (an
    unnormalised target).  The weights :math:`w_i = \tilde p(x_i)/q(x_i)` are normalised within each
    batch, :math:`\hat r_i = w_i / \overline{w}`, and the estimate is
    :math:`\frac1n \sum_i \hat r_i \log \hat r_i` — the control variate now averages to exactly 0, and
    Jensen's inequality makes the estimate :math:`\ge 0`.  It is consistent but biased, by
    :math:`O(1/n)`, and it does not change when a constant is added to ``log_p``.

    Parameters
    ----------
    log_q, log_p : array_like, same shape
        ``log q(x)`` and ``log p(x)`` (or ``log p`` plus any constant, with ``self_normalised``) at
        draws from Q; ``log_p = -inf`` where P has no density.
    self_normalised : bool, default False
    axis : int, optional
        The sample axis; the others index independent estimates.

    Returns
    -------
    numpy.ndarray or float
        The estimates in nats (the input shape without ``axis``).

    Raises
    ------
    ValueError
        Shape mismatch, no samples, NaN, ``log_q`` not finite, ``log_p = +inf``; with
        ``self_normalised``, a batch whose weights are all 0.

    References
    ----------
    Owen, A. B. (2013). *Monte Carlo theory, methods and examples*, ch. 9 (importance sampling,
    self-normalised). Schulman (2020), "Approximating KL divergence".
    """
    lq, lp = _log_pair(log_q, log_p, axis)
    log_w = lp - lq
    if not self_normalised:
        return np.mean(_r_log_r_cv(log_w), axis=axis)
    top = np.max(log_w, axis=axis, keepdims=True)
    if np.any(np.isneginf(top)):
        raise ValueError("every weight p(x)/q(x) of a batch is 0: self-normalisation needs some draw where p > 0")
    n = lq.shape[axis]
    log_r_hat = log_w - (top + np.log(np.sum(np.exp(log_w - top), axis=axis, keepdims=True))) + np.log(n)
    r_hat = np.exp(log_r_hat)
    with np.errstate(invalid="ignore"):
        terms = np.where(r_hat > 0, r_hat * log_r_hat, 0.0)
    return np.maximum(np.mean(terms, axis=axis), 0.0)  # >= 0 exactly; rounding can give -1e-17


def control_variate_estimates(log_q, log_p, lam, *, axis=-1):
    r"""Estimates of :math:`D(Q \| P)` from draws :math:`x \sim Q` by :math:`k_\lambda = -\log r + \lambda (r - 1)`.

    Every :math:`\lambda` gives an unbiased estimator (:math:`\mathbb E_Q[r - 1] = 0`); ``lam = 0`` is
    ``k1`` and ``lam = 1`` is ``k3``, the only choice with every term :math:`\ge 0`.  The variance

    .. math::

        \operatorname{Var} k_\lambda = \operatorname{Var}\log r - 2\lambda \operatorname{Cov}(\log r, r)
        + \lambda^2 \operatorname{Var} r

    is smallest at :math:`\lambda^* = \operatorname{Cov}(\log r, r) / \operatorname{Var} r`.
    ``lam="fitted"`` estimates :math:`\lambda^*` from the same batch (:func:`fitted_coefficient`),
    which makes the estimate slightly biased, by :math:`O(1/n)`.

    Parameters
    ----------
    log_q, log_p : array_like, same shape
    lam : float or "fitted"
    axis : int, optional

    Returns
    -------
    numpy.ndarray or float
    """
    lq, lp = _log_pair(log_q, log_p, axis)
    log_r = lp - lq
    if isinstance(lam, str):
        if lam != "fitted":
            raise ValueError(f"lam must be a number or 'fitted', got {lam!r}")
        lam = np.expand_dims(fitted_coefficient(lq, lp, axis=axis), axis)
    elif isinstance(lam, bool) or not np.all(np.isfinite(np.asarray(lam, dtype=float))):
        raise ValueError(f"lam must be a finite number or 'fitted', got {lam!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.mean(-log_r + lam * np.expm1(log_r), axis=axis)


def fitted_coefficient(log_q, log_p, *, axis=-1):
    r"""The sample estimate :math:`\hat\lambda` of :math:`\operatorname{Cov}(\log r, r) / \operatorname{Var} r`.

    Computed on ``r - 1 = expm1(log_r)``.  Needs at least 2 samples and ``r`` not constant; returns
    ``nan`` for a batch where ``r`` does not vary.
    """
    lq, lp = _log_pair(log_q, log_p, axis)
    if lq.shape[axis] < 2:
        raise ValueError("need at least 2 samples to fit the coefficient")
    log_r = lp - lq
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = np.expm1(log_r)
        s_c = s - np.mean(s, axis=axis, keepdims=True)
        l_c = log_r - np.mean(log_r, axis=axis, keepdims=True)
        return np.sum(l_c * s_c, axis=axis) / np.sum(s_c * s_c, axis=axis)


def gaussian_shift_control_variate(delta) -> dict:
    r"""The optimal coefficient and variances of :math:`k_\lambda` for :math:`Q = N(0, 1)`, :math:`P = N(\delta, 1)`.

    Under Q, :math:`\log r \sim N(-\delta^2/2, \delta^2)`, :math:`\operatorname{Cov}(\log r, r) = \delta^2`
    and :math:`\operatorname{Var} r = e^{\delta^2} - 1`, so

    .. math::

        \lambda^* = \frac{\delta^2}{e^{\delta^2} - 1}, \qquad
        \operatorname{Var} k_\lambda = \delta^2 - 2\lambda\delta^2 + \lambda^2 (e^{\delta^2} - 1),

    with :math:`\lambda^* \to 1` (``k3``) as :math:`\delta \to 0`.

    Returns
    -------
    dict
        ``{"lambda_star": float, "variance": callable lam -> single-sample variance (nats²),
        "var_k1", "var_k3", "var_star": floats}``.
    """
    d = float(delta)
    if not np.isfinite(d) or d == 0:
        raise ValueError(f"delta must be a finite non-zero number, got {delta!r}")
    d2 = d * d
    var_r = float(np.expm1(d2))
    lam_star = d2 / var_r

    def variance(lam):
        lam = np.asarray(lam, dtype=float)
        return d2 - 2 * lam * d2 + lam * lam * var_r

    return {"lambda_star": lam_star, "variance": variance, "var_k1": d2, "var_k3": float(expm1mx(d2)),
            "var_star": float(d2 - d2 * lam_star)}
