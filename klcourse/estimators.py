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

References
----------
Schulman, J. (2020). Approximating KL divergence. http://joschu.net/blog/kl-approx.html
Cover, T. M. & Thomas, J. A. (2006). *Elements of Information Theory*, 2nd ed., Wiley, ch. 2.
"""

from __future__ import annotations

import numpy as np

from klcourse.gaussians import expm1mx

__all__ = ["mc_kl"]

ESTIMATORS = ("k1", "k2", "k3")


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


def _mc_kl_torch(log_q, log_p, estimator: str):
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
    return _per_sample(lp - lq, estimator, torch).mean()


def mc_kl(log_q, log_p, *, estimator="k3"):
    r"""Monte Carlo estimate of :math:`D(Q \| P)` from samples :math:`x_i \sim Q`.

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

    Returns
    -------
    float or torch.Tensor
        The sample mean over all entries.  If either input is a ``torch.Tensor`` the result
        is a 0-d tensor (differentiable, on the same device), otherwise a Python float.

    Raises
    ------
    ValueError
        Unknown estimator, shape mismatch, no samples, NaN, ``log_q`` not finite,
        ``log_p = +inf``.

    Notes
    -----
    ``k1`` and ``k3`` are unbiased; ``k2`` is biased (its mean is an f-divergence that
    agrees with KL to second order when Q is close to P).  Individual ``k1`` values are
    negative whenever ``p(x) > q(x)``, so its average can be negative for small samples.

    References
    ----------
    Schulman (2020), "Approximating KL divergence".
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {', '.join(map(repr, ESTIMATORS))}")
    if _is_torch(log_q) or _is_torch(log_p):
        return _mc_kl_torch(log_q, log_p, estimator)
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
