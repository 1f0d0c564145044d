"""Computing KL without fooling yourself (chapter 5): naive formulas, stress sets, accuracy tables.

This module holds what chapter 5 measures.  Three kinds of functions live here:

* **Deliberately naive reference implementations**, all named ``naive_*``: the textbook
  formulas typed literally (and the epsilon hack), kept so the chapter can *measure* how they
  fail.  Never use them for real work; use :func:`klcourse.kl_divergence`,
  :func:`klcourse.kl_normal` and friends instead.
* **Stable building blocks** that the chapter's exercises need: :func:`r_minus_log1p`
  (``r - log1p(r)`` without cancellation) and :func:`kl_bernoulli`; and
  :func:`kl_from_logits`, a per-row ``D(P || Q)`` from logits that, unlike
  ``F.kl_div(log_softmax(z_q), softmax(z_p))``, stays finite when classes are masked with ``-inf``.
* **Conditioning**: :func:`kl_normal_condition`, the relative condition number of the Gaussian
  KL, which separates what the *problem* loses to rounded inputs from what an *algorithm* loses;
  :func:`kl_discrete_condition` for discrete pairs in two classes of perturbations (on the simplex,
  or free), checked by :func:`kl_perturbation_amplification` (:func:`condition_experiment`);
  :func:`backward_stability_rows`, which routes are backward stable in which class; and
  :func:`softmax_value_gradient_errors`, autodiff gradients versus values.
* **Measurement tools**: seeded stress sets of nearly identical pairs
  (:func:`gaussian_stress_set`, :func:`discrete_stress_set`, :func:`dyadic_near_pair`),
  high-precision references in ``mpmath`` (:func:`mp_kl_normal`, :func:`mp_kl_discrete`),
  and :func:`accuracy_table`, the side-by-side comparison of klcourse, the textbook formula,
  SciPy and ``torch.distributions`` shown in the chapter.

Why the textbook formulas fail
------------------------------
A KL divergence between nearly equal distributions is small, of the order of the *square*
of their relative difference ``delta``, but the textbook formulas compute it as a sum of
terms with both signs that are much larger: of order 1 for Gaussians, of order ``delta``
for discrete distributions (whose ``log(p/q)`` factors are themselves known only to an
absolute ``eps = 2.2e-16``).  Either way the relative error of the result is about
``eps / delta**2``: at ``delta = 1e-8`` every digit is noise and the sign is a coin flip.
The stable forms rewrite the divergence as a sum of non-negative terms, each evaluated
without cancellation:

    D(N(m0, s0^2) || N(m1, s1^2)) = phi(2x)/2 + ((m0 - m1)/s1)^2 / 2,
        x = log(s0/s1),  phi(u) = e^u - 1 - u;
    D(P || Q) = sum_i p_i (r_i - log1p(r_i)),  r_i = q_i/p_i - 1   (if sum p = sum q = 1, all p_i > 0).

References
----------
Goldberg, D. (1991). What every computer scientist should know about floating-point
arithmetic. *ACM Computing Surveys* 23(1), 5-48.
Higham, N. J. (2002). *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM
(ch. 1-4: rounding, cancellation, summation).
Blanchard, P., Higham, D. J. & Higham, N. J. (2021). Accurately computing the log-sum-exp
and softmax functions. *IMA J. Numer. Anal.* 41(4), 2311-2330.
"""

from __future__ import annotations

import html
import math
from fractions import Fraction

import mpmath
import numpy as np

from klcourse.divergences import kl_divergence
from klcourse.gaussians import expm1mx, kl_normal

__all__ = [
    "DISCRETE_DELTAS",
    "DISCRETE_METHODS",
    "DPS",
    "GAUSSIAN_METHODS",
    "INACCURATE",
    "LOW_PRECISION_DTYPES",
    "SWEEP_DELTAS",
    "SWEEP_DISCRETE_METHODS",
    "SWEEP_GAUSSIAN_METHODS",
    "accuracy_table",
    "BACKWARD_ROUTES",
    "STABLE_RATIO",
    "VALUE_GRADIENT_ROUTES",
    "accuracy_table_html",
    "backward_stability_html",
    "backward_stability_rows",
    "condition_experiment",
    "discrete_stress_set",
    "discrete_sweep",
    "dyadic_near_pair",
    "float32_kl_div_sweep",
    "gaussian_stress_set",
    "gaussian_sweep",
    "kl_bernoulli",
    "kl_from_logits",
    "kl_discrete_condition",
    "kl_normal_condition",
    "kl_perturbation_amplification",
    "low_precision_errors",
    "mp_kl_discrete",
    "mp_kl_normal",
    "naive_kl_bernoulli",
    "naive_kl_clipped",
    "naive_kl_discrete",
    "naive_kl_discrete_log1p",
    "naive_kl_normal",
    "naive_kl_normal_expm1",
    "naive_log_softmax",
    "naive_softmax",
    "r_minus_log1p",
    "relative_errors",
    "scipy_kl_normal",
    "softmax_value_gradient_errors",
    "torch_kl_categorical",
    "torch_kl_normal",
    "torch_r_minus_log1p",
    "unit_roundoff",
]

#: decimal digits of the mpmath references (float64 carries about 16)
DPS = 50

#: a result is counted as "inaccurate" in :func:`accuracy_table` when its relative error exceeds this
INACCURATE = 1e-6


# ----------------------------------------------------------------------------- naive formulas
def naive_kl_normal(mu0, sigma0, mu1, sigma1):
    r"""The textbook ``D(N(mu0, sigma0^2) || N(mu1, sigma1^2))``, typed literally (do not use).

    .. math:: \log\frac{\sigma_1}{\sigma_0} + \frac{\sigma_0^2 + (\mu_0-\mu_1)^2}{2\sigma_1^2} - \frac12

    For nearly equal distributions the three terms are of order 1 and cancel to leave a
    result of order ``(sigma0/sigma1 - 1)**2``: the relative error is about
    ``eps / (sigma0/sigma1 - 1)**2`` and the result can be negative.  Standard deviations,
    not variances.  Compare :func:`klcourse.kl_normal`.
    """
    mu0, sigma0, mu1, sigma1 = (np.asarray(a, dtype=float) for a in (mu0, sigma0, mu1, sigma1))
    return np.log(sigma1 / sigma0) + (sigma0**2 + (mu0 - mu1) ** 2) / (2 * sigma1**2) - 0.5


def naive_kl_normal_expm1(mu0, sigma0, mu1, sigma1):
    r"""Half-way stable Gaussian KL: ``(expm1(2x) - 2x)/2 + z**2/2`` (do not use).

    ``x = log(sigma0/sigma1)`` is computed accurately (``log1p`` of the exact difference), but
    ``phi(u) = expm1(u) - u`` is formed by a subtraction that still cancels for small ``u``:
    ``expm1(u)`` is correct to ``eps * |u|`` and the result is about ``u**2/2``, so the
    relative error is about ``2 eps / |u|`` instead of the textbook's ``eps / u**2``.
    :func:`klcourse.kl_normal` sums the Taylor series of ``phi`` instead (error ~ ``eps``).
    """
    mu0, sigma0, mu1, sigma1 = (np.asarray(a, dtype=float) for a in (mu0, sigma0, mu1, sigma1))
    x = np.log1p((sigma0 - sigma1) / sigma1)
    z = (mu0 - mu1) / sigma1
    return 0.5 * (np.expm1(2 * x) - 2 * x) + 0.5 * z * z


def naive_kl_discrete(p, q, axis=-1):
    """The textbook ``sum(p * log(p / q))`` (do not use).

    NaN as soon as some ``p_i = 0`` (``0 * log 0 = 0 * -inf``), ``inf`` where ``q_i = 0 < p_i``,
    and for ``q ~ p`` a sum of terms of order ``|q - p|`` with both signs whose rounding errors
    swamp the true result of order ``(q - p)**2 / p``.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return np.sum(p * np.log(p / q), axis=axis)


def naive_kl_discrete_log1p(p, q, axis=-1):
    r"""``sum(p * (r - log1p(r)))`` with ``r = q/p - 1``, the subtraction done naively (do not use).

    Every term is ``>= 0`` (so the result is never negative), but ``r - log1p(r)`` still
    cancels for small ``r`` (relative error about ``2 eps/|r|``), and the identity
    ``sum p r = sum q - sum p = 0`` behind the rewrite holds only if ``sum p == sum q``
    *exactly*.  An outcome with ``p_i = 0`` contributes the limit of ``p psi((q - p)/p)`` as
    ``p -> 0``, which is ``q_i`` (not 0: the added zero ``sum (q - p)`` includes it).
    :func:`klcourse.kl_divergence` fixes both weaknesses.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (q - p) / p
        terms = np.where(p > 0, p * (r - np.log1p(r)), q)
    return np.sum(terms, axis=axis)


def naive_kl_clipped(p, q, eps=1e-10, axis=-1):
    """The epsilon hack: replace ``q_i = 0`` by ``eps``, then sum over ``p_i > 0`` (do not use).

    Where ``P`` puts mass ``m`` on outcomes that ``Q`` rules out the true divergence is
    ``+inf``; this returns a finite number that grows like ``m * log(1/eps)``, i.e. it is set
    by the arbitrary ``eps``.  Shown in chapter 5 as a mistake; :func:`klcourse.kl_divergence`
    returns ``inf``.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    q_clipped = np.where(q > 0, q, eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q_clipped), 0.0)
    return np.sum(terms, axis=axis)


def naive_softmax(logits, axis=-1):
    """``exp(z) / sum(exp(z))`` without the max shift (do not use): overflows to NaN.

    In float64 ``exp`` overflows above 709.78, in float32 above 88.72; then ``inf / inf = NaN``.
    The dtype of ``logits`` is kept (pass a float32 array to see float32 behaviour).
    """
    z = np.asarray(logits)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(float)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def naive_log_softmax(logits, axis=-1):
    """``log(softmax(z))`` with a max-shifted softmax (do not use): underflows to ``-inf``.

    The shift prevents overflow, but a probability below the smallest subnormal (about
    ``exp(-745)`` in float64, ``exp(-103)`` in float32) rounds to 0 and its log is ``-inf``;
    ``z - logsumexp(z)`` (``scipy.special.log_softmax``, ``torch.log_softmax``) stays finite.
    """
    z = np.asarray(logits)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(float)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    with np.errstate(divide="ignore"):
        return np.log(e / np.sum(e, axis=axis, keepdims=True))


def naive_kl_bernoulli(a, b):
    r"""Textbook ``D(Bern(a) || Bern(b)) = a log(a/b) + (1-a) log((1-a)/(1-b))`` (do not use).

    NaN at ``a = 0`` or ``a = 1`` (``0 log 0``) and rounding noise when ``b ~ a``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b))


# ----------------------------------------------------------------------------- stable pieces
def r_minus_log1p(r):
    r"""``r - log1p(r) >= 0`` for ``r >= -1``, accurate to a few ulp even for tiny ``|r|``.

    Computed as :math:`\varphi(\operatorname{log1p}(r))` with :math:`\varphi(u) = e^u - 1 - u`
    (:func:`klcourse.gaussians.expm1mx`): since :math:`e^{\log(1+r)} - 1 = r`, the two agree,
    and both steps keep full *relative* accuracy, whereas ``r - np.log1p(r)`` loses about
    ``log10(2/|r|)`` digits.  ``inf`` at ``r = -1``.

    Parameters
    ----------
    r : array_like
        Values ``>= -1``.

    Returns
    -------
    float or numpy.ndarray

    References
    ----------
    Higham (2002), sec. 1.14 (log1p and expm1).
    """
    r = np.asarray(r, dtype=float)
    if np.any(r < -1):
        raise ValueError("r_minus_log1p needs r >= -1")
    with np.errstate(divide="ignore"):
        u = np.log1p(r)
    return _scalar(expm1mx(u))


def kl_bernoulli(a, b):
    r"""``D(Bern(a) || Bern(b))`` in nats, to full relative accuracy even when ``b ~ a``.

    .. math::

        D = a\log\frac ab + (1-a)\log\frac{1-a}{1-b}
          = a\,\psi\Big(\frac{b-a}{a}\Big) + (1-a)\,\psi\Big(\frac{a-b}{1-a}\Big),
        \qquad \psi(r) = r - \log(1+r) \ge 0 .

    The second form adds the zero ``(b - a) + (a - b)`` to the first and splits it over the
    two terms; each term is then ``>= 0`` and is evaluated by :func:`r_minus_log1p`.  The
    difference ``b - a`` is exact when ``b/a`` is in ``[1/2, 2]`` (Sterbenz's lemma), so the
    result keeps a relative error of a few ulp however close ``b`` is to ``a``.

    Parameters
    ----------
    a : array_like
        Success probability of ``P``, the first argument (the expectation is under ``P``).
    b : array_like
        Success probability of ``Q``.  Both in ``[0, 1]``; they broadcast.

    Returns
    -------
    float or numpy.ndarray
        ``0`` when ``a == b``; ``inf`` when ``Q`` rules out an outcome ``P`` allows
        (``b = 0 < a`` or ``b = 1 > a``).  A term with zero weight (``a = 0`` or ``a = 1``)
        follows the convention ``0 log 0 = 0``; in the second form its limit is the bare
        gap (``b`` for ``a = 0``, ``1 - b`` for ``a = 1``), not 0.

    Raises
    ------
    ValueError
        NaN or values outside ``[0, 1]``.

    References
    ----------
    Cover & Thomas (2006), ch. 2 and 11 (the binary relative entropy).
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    for name, v in (("a", a), ("b", b)):
        if np.any(~np.isfinite(v)) or np.any((v < 0) | (v > 1)):
            raise ValueError(f"{name} must be a probability in [0, 1]")
    one_minus_a = 1.0 - a
    first = _weighted_psi(a, b - a)  # a psi((b - a)/a) = (b - a) + a log(a/b)
    second = _weighted_psi(one_minus_a, a - b)  # the same for the failures
    return _scalar(first + second)


def _weighted_psi(weight, gap):
    """``weight * psi(gap / weight) = gap - weight * log(1 + gap/weight)``; its limit ``gap`` at weight 0."""
    safe = np.where(weight > 0, weight, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.maximum(gap / safe, -1.0)  # r >= -1 whenever weight > 0; clipped only where masked out
        return np.where(weight > 0, weight * np.asarray(r_minus_log1p(r)), gap)


def _scalar(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def kl_from_logits(target_logits, model_logits, dim=-1):
    r"""``D(P || Q)`` per row for ``P = softmax(target_logits)``, ``Q = softmax(model_logits)`` (torch).

    .. math:: D(P\,\|\,Q) = \sum_{i:\, p_i > 0} p_i\,(\log p_i - \log q_i),

    with both log-probabilities from ``log_softmax``.  Logits may be ``-inf`` (masked classes,
    e.g. padding or illegal actions): a class with ``p_i = 0`` contributes 0 (the convention
    ``0 log 0 = 0``), and a class with ``p_i > 0`` but ``q_i = 0`` makes the row ``+inf``.
    ``F.kl_div(log_softmax(model_logits), softmax(target_logits))`` returns ``nan`` as soon as one
    class is masked in both, because it forms ``0 * (-inf)``; here the masked terms are selected
    away with ``torch.where`` *after* the subtraction, so the forward value and the gradient with
    respect to either set of logits stay finite (the discarded branch receives a zero gradient,
    and ``log_softmax``'s backward pass multiplies it by ``q_i = 0``).

    Parameters
    ----------
    target_logits, model_logits : torch.Tensor or array_like
        Same shape; finite or ``-inf``.  NumPy input is converted to float64 tensors.
    dim : int
        The class axis.

    Returns
    -------
    torch.Tensor
        Shape of the inputs without ``dim``; nats.  Differentiable.

    Raises
    ------
    ValueError
        Shapes differ, a logit is NaN or ``+inf``, or a row of ``target_logits`` or
        ``model_logits`` is entirely ``-inf`` (no distribution).

    References
    ----------
    PyTorch documentation of ``torch.nn.functional.kl_div`` (the elementwise
    ``target * (log(target) - input)``); Cover & Thomas (2006), sec. 2.3 (the conventions).
    """
    import torch

    zp, zq = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=float))
              for x in (target_logits, model_logits))
    if zp.shape != zq.shape:
        raise ValueError(f"target_logits and model_logits must have the same shape, got {tuple(zp.shape)} "
                         f"and {tuple(zq.shape)}")
    for name, z in (("target_logits", zp), ("model_logits", zq)):
        if torch.isnan(z).any() or (z == math.inf).any():
            raise ValueError(f"{name} contains NaN or +inf; logits must be finite or -inf (masked)")
        if (z == -math.inf).all(dim=dim).any():
            raise ValueError(f"a row of {name} is entirely -inf: it defines no distribution")
    log_p, log_q = torch.log_softmax(zp, dim), torch.log_softmax(zq, dim)
    support = log_p > -math.inf
    gap = torch.where(support, log_p - log_q, torch.zeros_like(log_p))  # +inf where q = 0 < p
    terms = torch.where(torch.isinf(gap), gap, log_p.exp() * gap)  # an underflowed p still gives +inf
    return terms.sum(dim)


def kl_normal_condition(mu0, sigma0, mu1, sigma1, dps=DPS):
    r"""Relative condition number of ``D(N(mu0, sigma0^2) || N(mu1, sigma1^2))`` in its four inputs.

    .. math::

        \kappa = \frac{\sum_j |x_j\, \partial D/\partial x_j|}{D}, \qquad
        x = (\mu_0, \sigma_0, \mu_1, \sigma_1),

    the componentwise relative condition number (Higham 2002, sec. 1.6): if every input is changed
    by a relative amount at most ``eta``, ``D`` changes by a relative amount at most about
    ``kappa * eta``.  No algorithm that starts from inputs rounded to float64 (relative error
    ``u = eps/2``) can promise better than ``kappa * u``; a *backward stable* algorithm (one that
    returns the exact ``D`` of inputs perturbed by a few ``u``) achieves a few ``kappa * u``.  With
    ``rho = (sigma0/sigma1)^2`` and ``d = mu0 - mu1`` the terms are

    ``sigma0 dD/dsigma0 = rho - 1``, ``sigma1 dD/dsigma1 = 1 - rho - d^2/sigma1^2``,
    ``mu0 dD/dmu0 = mu0 d/sigma1^2``, ``mu1 dD/dmu1 = -mu1 d/sigma1^2``.

    For equal means and ``sigma1 = sigma0 (1 + delta)`` this is about ``4/|delta|`` (``2/|delta|``
    from each width); for equal widths and ``mu0 = 0`` it is exactly 4.  Evaluated in ``dps``-digit
    arithmetic on the exact float64 inputs; ``inf`` where ``D = 0``.  Standard deviations.
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (mu0, sigma0, mu1, sigma1)))
    if np.any(arrays[1] <= 0) or np.any(arrays[3] <= 0) or not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("kl_normal_condition needs finite means and standard deviations > 0")
    out = np.empty(arrays[0].shape)
    with mpmath.workdps(dps):
        half = mpmath.mpf(1) / 2
        for idx, vals in enumerate(zip(*(x.ravel().tolist() for x in arrays), strict=True)):
            a, b, c, e = map(mpmath.mpf, vals)
            rho, d = (b / e) ** 2, a - c
            kl = mpmath.log(e / b) + (b * b + d * d) / (2 * e * e) - half
            terms = abs(rho - 1) + abs(1 - rho - d * d / (e * e)) + (abs(a) + abs(c)) * abs(d) / (e * e)
            out.flat[idx] = math.inf if kl == 0 else float(terms / kl)
    return _scalar(out)


def kl_discrete_condition(p, q, dps=DPS, perturbation="simplex"):
    r"""Relative condition number of the discrete KL divergence in the ``2n`` entries of ``p`` and ``q``.

    Two classes of componentwise relative perturbations ``p_j (1 + eta_j)``, ``q_j (1 + zeta_j)``,
    ``|eta_j|, |zeta_j| <= eta``, give two condition numbers (Higham 2002, sec. 1.6):

    ``perturbation="simplex"`` (default): the vectors stand for the distributions they represent, so a
    perturbed vector is renormalised and the function is ``D(p/sum p || q/sum q)``:

    .. math::

        \kappa_\Delta = \frac{1}{D}\sum_j \Big(|\hat q_j - \hat p_j|
                 + \hat p_j\,\big|\log(\hat p_j/\hat q_j) - D\big|\Big),
        \qquad \hat p = p/\textstyle\sum p,\ \hat q = q/\textstyle\sum q,

    the two terms being :math:`|q_j\,\partial D/\partial q_j|` and :math:`|p_j\,\partial D/\partial p_j|`.
    For ``q = p (1 + delta z)`` both are of order ``delta`` and ``D`` of order ``delta**2``:
    ``kappa`` grows like ``1/delta`` (about ``8 TV / chi^2``).

    ``perturbation="unconstrained"``: the formula ``F(p, q) = sum_j p_j log(p_j/q_j)`` as a function of
    ``2n`` free positive numbers (perturbed vectors leave the simplex and are *not* renormalised):

    .. math::

        \kappa_F = \frac{\sum_j p_j\,|\log(p_j/q_j) + 1| + \sum_j p_j}{|F|},

    from ``p_j dF/dp_j = p_j (log(p_j/q_j) + 1)`` and ``q_j dF/dq_j = -p_j``.  The ``+ 1`` and the
    ``sum p_j`` do not vanish as ``q -> p``, so ``kappa_F`` is about ``2/D ~ 4/chi^2``: it grows like
    ``1/delta**2``.

    Rows of 2-D input are separate pairs; ``inf`` where the divergence is 0; entries with ``p_j = 0``
    contribute only their ``q`` term (0 in the unconstrained class), and ``q_j = 0 < p_j``
    (divergence ``inf``) gives ``nan``.  Evaluated in ``dps`` digits on the exact float64 inputs.

    Raises
    ------
    ValueError
        Negative, NaN or infinite entries; an unknown ``perturbation``.
    """
    if perturbation not in ("simplex", "unconstrained"):
        raise ValueError(f"perturbation must be 'simplex' or 'unconstrained', got {perturbation!r}")
    p2, q2 = np.atleast_2d(np.asarray(p, dtype=float)), np.atleast_2d(np.asarray(q, dtype=float))
    p2, q2 = np.broadcast_arrays(p2, q2)
    if np.any(p2 < 0) or np.any(q2 < 0) or not (np.all(np.isfinite(p2)) and np.all(np.isfinite(q2))):
        raise ValueError("kl_discrete_condition needs finite, non-negative p and q")
    out = np.empty(p2.shape[0])
    with mpmath.workdps(dps):
        for row, (pr, qr) in enumerate(zip(p2.tolist(), q2.tolist(), strict=True)):
            if any(a > 0 and b == 0 for a, b in zip(pr, qr, strict=True)):
                out[row] = math.nan
                continue
            if perturbation == "simplex":
                ps, qs = mpmath.fsum(map(mpmath.mpf, pr)), mpmath.fsum(map(mpmath.mpf, qr))
                ph, qh = [mpmath.mpf(a) / ps for a in pr], [mpmath.mpf(b) / qs for b in qr]
                kl = mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(ph, qh, strict=True) if a > 0)
                terms = mpmath.fsum(abs(b - a) + (a * abs(mpmath.log(a / b) - kl) if a > 0 else 0)
                                    for a, b in zip(ph, qh, strict=True))
            else:
                pm, qm = [mpmath.mpf(a) for a in pr], [mpmath.mpf(b) for b in qr]
                kl = mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(pm, qm, strict=True) if a > 0)
                terms = mpmath.fsum(a * abs(mpmath.log(a / b) + 1) + a
                                    for a, b in zip(pm, qm, strict=True) if a > 0)
            out[row] = math.inf if kl == 0 else float(terms / abs(kl))
    return _scalar(out[0]) if np.ndim(p) == 1 and np.ndim(q) == 1 else out


def _mp_divergence(p, q, perturbation):
    """``D(p/sum p || q/sum q)`` (simplex) or ``sum p log(p/q)`` (unconstrained) of mpf lists, ``p, q > 0``."""
    if perturbation == "simplex":
        ps, qs = mpmath.fsum(p), mpmath.fsum(q)
        p, q = [a / ps for a in p], [b / qs for b in q]
    return mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(p, q, strict=True))


def kl_perturbation_amplification(p, q, perturbation="simplex", size=1e-20, n_draws=20, seed=0, dps=DPS):
    r"""How much relative perturbations of ``p`` and ``q`` of relative size ``size`` change the KL, measured.

    An independent check of :func:`kl_discrete_condition`: the divergence is evaluated in ``dps``-digit
    arithmetic at perturbed inputs ``p_j (1 + size s_j)``, ``q_j (1 + size t_j)`` and the observed
    amplification :math:`|D(\tilde p, \tilde q) - D(p, q)| / (\mathrm{size}\cdot D(p, q))` is returned.

    * ``n_draws`` random perturbations with independent signs ``s_j, t_j = +-1`` (seeded): the corners of
      the box of allowed perturbations, where its extremes lie.  Each amplification is at most the
      condition number (to first order in ``size``).
    * the *aligned* perturbation, whose signs are those of the terms ``x_j dD/dx_j``: to first order it
      attains the condition number exactly.

    ``perturbation`` is ``"simplex"`` (the perturbed vectors are renormalised: ``D(p/sum p || q/sum q)``)
    or ``"unconstrained"`` (``F = sum p log(p/q)`` of the raw perturbed vectors); see
    :func:`kl_discrete_condition`.  ``size`` must be small against the relative difference of ``p``
    and ``q`` for the first-order picture to hold, and ``dps`` large enough to resolve the change
    (the default ``1e-20`` with 50 digits resolves divergences down to about ``1e-25``).

    Parameters
    ----------
    p, q : array_like
        1-D, same length, entries ``> 0``.
    perturbation : {"simplex", "unconstrained"}
    size : float
        Relative size of each entry's perturbation, in ``(0, 1e-6]``.
    n_draws : int
        Number of random sign patterns (``>= 1``).
    seed : int
    dps : int

    Returns
    -------
    random : numpy.ndarray
        Shape ``(n_draws,)``: the amplification of each random perturbation.
    aligned : float
        The amplification of the aligned perturbation (about the condition number).

    Raises
    ------
    ValueError
        Shapes, non-positive or non-finite entries, ``size`` or ``n_draws`` out of range, an unknown
        ``perturbation``.
    """
    if perturbation not in ("simplex", "unconstrained"):
        raise ValueError(f"perturbation must be 'simplex' or 'unconstrained', got {perturbation!r}")
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError(f"p and q must be 1-D of the same length, got shapes {p.shape} and {q.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q)) and np.all(p > 0) and np.all(q > 0)):
        raise ValueError("kl_perturbation_amplification needs finite entries > 0 in p and q")
    if not 0 < size <= 1e-6:
        raise ValueError(f"size must be in (0, 1e-6], got {size}")
    if int(n_draws) < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    n = p.size
    signs = np.random.default_rng(seed).choice([-1, 1], size=(int(n_draws), 2 * n))
    with mpmath.workdps(dps):
        pm, qm = [mpmath.mpf(a) for a in p.tolist()], [mpmath.mpf(b) for b in q.tolist()]
        h = mpmath.mpf(size)
        base = _mp_divergence(pm, qm, perturbation)
        if base == 0:
            raise ValueError("p and q are equal: the relative amplification is undefined")

        def amplification(s):
            pt = [a * (1 + h * int(si)) for a, si in zip(pm, s[:n], strict=True)]
            qt = [b * (1 + h * int(ti)) for b, ti in zip(qm, s[n:], strict=True)]
            return float(abs(_mp_divergence(pt, qt, perturbation) - base) / (h * abs(base)))

        random = np.array([amplification(s) for s in signs])
        if perturbation == "simplex":
            ps, qs = mpmath.fsum(pm), mpmath.fsum(qm)
            terms = ([a / ps * (mpmath.log((a / ps) / (b / qs)) - base) for a, b in zip(pm, qm, strict=True)]
                     + [b / qs - a / ps for a, b in zip(pm, qm, strict=True)])
        else:
            terms = [a * (mpmath.log(a / b) + 1) for a, b in zip(pm, qm, strict=True)] + [-a for a in pm]
        aligned = amplification([1 if t >= 0 else -1 for t in terms])
    return random, aligned


def condition_experiment(deltas, n_pairs=5, n_outcomes=20, n_draws=20, size=1e-20, seed=0):
    r"""Derived condition numbers of nearly equal pairs next to perturbation experiments, in both classes.

    For each ``delta`` and ``n_pairs`` seeded exactly normalised pairs (:func:`dyadic_near_pair`,
    ``q ~ p (1 + delta z)``), :func:`kl_discrete_condition` gives ``kappa`` and
    :func:`kl_perturbation_amplification` the amplifications observed in ``dps = 50``-digit arithmetic
    (``n_draws`` random sign patterns of relative size ``size``, and the aligned one).

    Returns
    -------
    dict
        ``{"simplex": {...}, "unconstrained": {...}}`` with arrays ``"kappa"``, ``"aligned"``,
        ``"max_random"``, ``"median_random"``, each of shape ``(len(deltas), n_pairs)``; and ``"kl"``,
        ``"chi2"`` (:math:`\sum (q - p)^2/p`) and ``"tv"`` (:math:`\tfrac12\sum|q - p|`) of the pairs,
        computed exactly (rational arithmetic for ``chi2`` and ``tv``).
    """
    deltas = np.asarray(deltas, dtype=float)
    if deltas.ndim != 1 or np.any(~(deltas > 0)):
        raise ValueError("deltas must be a 1-D sequence of numbers > 0")
    rng = np.random.default_rng(seed)
    shape = (deltas.size, int(n_pairs))
    keys = ("kappa", "aligned", "max_random", "median_random")
    out = {kind: {k: np.empty(shape) for k in keys} for kind in ("simplex", "unconstrained")}
    out.update({"kl": np.empty(shape), "chi2": np.empty(shape), "tv": np.empty(shape)})
    for i, delta in enumerate(deltas):
        for j in range(int(n_pairs)):
            p, q = dyadic_near_pair(delta, n_outcomes, rng)
            pf, qf = [Fraction(a) for a in p], [Fraction(b) for b in q]
            out["chi2"][i, j] = float(sum((b - a) ** 2 / a for a, b in zip(pf, qf, strict=True)))
            out["tv"][i, j] = float(sum(abs(b - a) for a, b in zip(pf, qf, strict=True)) / 2)
            out["kl"][i, j] = mp_kl_discrete(p, q)
            for kind in ("simplex", "unconstrained"):
                random, aligned = kl_perturbation_amplification(p, q, kind, size=size, n_draws=n_draws,
                                                                seed=int(rng.integers(2**31)))
                res = out[kind]
                res["kappa"][i, j] = kl_discrete_condition(p, q, perturbation=kind)
                res["aligned"][i, j], res["max_random"][i, j] = aligned, random.max()
                res["median_random"][i, j] = np.median(random)
    return out


# ----------------------------------------------------------------------------- stress sets
def gaussian_stress_set(n=20_000, seed=0):
    """Seeded ``(mu0, sigma0, mu1, sigma1)`` arrays of univariate Gaussian pairs, five equal groups.

    A: ``sigma0`` and ``sigma1/sigma0`` log-uniform over ``e^[-20, 20]``, mean gaps ``e^[-5, 5] sigma1``;
    B: ``sigma1 = sigma0 (1 + eps)``, ``|eps|`` in 1e-16..1e-6, mean gap 0 or 1e-12..1e-6 ``sigma0``;
    C: ``sigma1 = sigma0``, mean gap 1e-12..1 ``sigma0``;
    D: as A but mean gaps 1e2..1e8 ``sigma1``;
    E: ``|log(sigma1/sigma0)|`` log-uniform in 1e-8..1.

    The same stream of random numbers as ``benchmarks/accuracy.py`` (which imports it), so a
    given ``(n, seed)`` always yields the same pairs.  Standard deviations, not variances.
    """
    rng = np.random.default_rng(seed)
    k = n // 5

    def sign(m):
        return rng.choice([-1.0, 1.0], m)

    s0 = np.exp(rng.uniform(-20, 20, n))
    m0 = rng.normal(0, 1, n) * s0 * rng.choice([0.0, 1.0], n)
    s1 = s0 * np.exp(rng.uniform(-20, 20, n))
    m1 = m0 + s1 * rng.normal(0, 1, n) * np.exp(rng.uniform(-5, 5, n))
    b, c, d, e = (slice(i * k, (i + 1) * k) for i in range(1, 5))
    s1[b] = s0[b] * (1 + sign(k) * 10 ** rng.uniform(-16, -6, k))
    m1[b] = m0[b] + s0[b] * rng.choice([0.0, 1.0], k) * 10 ** rng.uniform(-12, -6, k)
    s1[c] = s0[c]
    m1[c] = m0[c] + s0[c] * sign(k) * 10 ** rng.uniform(-12, 0, k)
    m1[d] = m0[d] + s1[d] * sign(k) * 10 ** rng.uniform(2, 8, k)
    s1[e] = s0[e] * np.exp(sign(k) * 10 ** rng.uniform(-8, 0, k))
    return m0, s0, m1, s1


#: relative perturbations of the discrete stress set: 1e-1 ... 1e-15, and 0 (q = p renormalised)
DISCRETE_DELTAS = tuple([10.0**-k for k in range(1, 16)] + [0.0])


def discrete_stress_set(deltas=DISCRETE_DELTAS, n_outcomes=100, seeds=range(8)):
    """Rows of nearly identical discrete distributions ``p`` and ``q = p (1 + delta z)`` renormalised.

    For every ``delta`` and every seed: ``p ~ Dirichlet(1)`` on ``n_outcomes`` outcomes,
    ``z`` standard normal, ``q`` divided by its (floating-point) sum.  ``delta = 0`` gives
    ``q = p / sum(p)``, which differs from ``p`` only by rounding.  ``benchmarks/discrete.py`` uses
    this set too.

    Returns
    -------
    p, q : numpy.ndarray, shape (len(deltas) * len(seeds), n_outcomes)
    delta : numpy.ndarray, shape (len(deltas) * len(seeds),)
        The ``delta`` of each row.
    """
    ps, qs, ds = [], [], []
    for delta in deltas:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            p = rng.dirichlet(np.ones(n_outcomes))
            q = p * (1.0 + delta * rng.standard_normal(n_outcomes))
            ps.append(p)
            qs.append(q / q.sum())
            ds.append(delta)
    return np.array(ps), np.array(qs), np.array(ds)


_DYADIC_BITS = 52


def dyadic_near_pair(delta, n_outcomes=50, rng=None):
    """Two distributions whose float64 entries sum to exactly 1, ``q_i ~ p_i (1 + delta z_i)``.

    Every entry is an integer multiple of ``2**-52``, so any summation order gives exactly 1
    and the comparison of formulas is not blurred by normalisation residuals.  The smallest
    meaningful ``delta`` is about ``n_outcomes * 2**-52`` (the grid spacing relative to an entry).

    Parameters
    ----------
    delta : float
        Relative size of the perturbation (``>= 0``).
    n_outcomes : int
    rng : numpy.random.Generator, optional
        Default ``numpy.random.default_rng(0)``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    total = 1 << _DYADIC_BITS
    k = np.floor(rng.dirichlet(np.ones(n_outcomes)) * total).astype(np.int64)
    k[np.argmax(k)] += total - int(k.sum())
    m = np.rint(delta * k * rng.standard_normal(n_outcomes)).astype(np.int64)
    m[np.argmax(k)] -= int(m.sum())
    if np.any(k + m <= 0):
        raise ValueError("delta is too large for this construction (an entry of q would be <= 0)")
    scale = 2.0**-_DYADIC_BITS
    return k * scale, (k + m) * scale


# ----------------------------------------------------------------------------- references
def mp_kl_normal(mu0, sigma0, mu1, sigma1, dps=DPS):
    """Textbook Gaussian KL in ``dps``-digit arithmetic on the exact float64 inputs.

    The inputs are converted exactly (a float64 is a dyadic rational), so the result is the
    divergence of exactly those distributions, rounded once to float64 at the end.  Arrays
    broadcast; returns a float64 array (or a float).
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (mu0, sigma0, mu1, sigma1)))
    out = np.empty(arrays[0].shape)
    with mpmath.workdps(dps):
        half = mpmath.mpf(1) / 2
        for idx, (a, b, c, d) in enumerate(zip(*(x.ravel().tolist() for x in arrays), strict=True)):
            a, b, c, d = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(c), mpmath.mpf(d)
            out.flat[idx] = float(mpmath.log(d / b) + (b * b + (a - c) ** 2) / (2 * d * d) - half)
    return _scalar(out)


def mp_kl_discrete(p, q, dps=DPS):
    """``D(p/sum p || q/sum q)`` per row, in ``dps``-digit arithmetic with the exact sums.

    The float64 entries and their sums are used exactly (rational arithmetic for the sums), so
    this is the divergence between the distributions the float64 vectors *represent* once
    normalised.  Terms with ``p_i = 0`` count 0; ``q_i = 0 < p_i`` gives ``inf``.
    """
    p2, q2 = np.atleast_2d(np.asarray(p, dtype=float)), np.atleast_2d(np.asarray(q, dtype=float))
    p2, q2 = np.broadcast_arrays(p2, q2)
    out = np.empty(p2.shape[0])
    with mpmath.workdps(dps):
        for row, (pr, qr) in enumerate(zip(p2.tolist(), q2.tolist(), strict=True)):
            out[row] = float(_mp_kl_row(pr, qr))
    return _scalar(out[0]) if np.ndim(p) == 1 and np.ndim(q) == 1 else out


def _mp_kl_row(p, q):
    p_sum, q_sum = sum(map(Fraction, p)), sum(map(Fraction, q))
    big_p = mpmath.mpf(p_sum.numerator) / p_sum.denominator
    big_q = mpmath.mpf(q_sum.numerator) / q_sum.denominator
    total = mpmath.mpf(0)
    for a, b in zip(p, q, strict=True):
        if a > 0:
            if b == 0:
                return mpmath.inf
            pa, qb = mpmath.mpf(a) / big_p, mpmath.mpf(b) / big_q
            total += pa * mpmath.log(pa / qb)
    return total


def relative_errors(values, reference):
    """``|value - ref| / ref`` elementwise; 0 where both are 0, ``inf`` for a non-finite value
    where ``ref`` is finite or a nonzero value where ``ref == 0``."""
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(values - reference) / reference
    err = np.where(reference == 0, np.where(values == 0, 0.0, np.inf), err)
    both_inf = np.isinf(values) & np.isinf(reference) & (values == reference)
    return np.where(both_inf, 0.0, np.where(np.isfinite(values), err, np.inf))


# ----------------------------------------------------------------------------- other libraries
def scipy_kl_normal(mu0, sigma0, mu1, sigma1):
    """Gaussian KL assembled from SciPy (which has none built in): cross-entropy minus entropy.

    ``H(P, Q) = -log q(mu0) + sigma0^2 / (2 sigma1^2)`` with ``scipy.stats.norm.logpdf`` and
    ``H(P)`` from ``scipy.stats.norm.entropy``; the difference cancels like the textbook formula.
    """
    from scipy import stats

    mu0, sigma0, mu1, sigma1 = (np.asarray(a, dtype=float) for a in (mu0, sigma0, mu1, sigma1))
    cross = -stats.norm.logpdf(mu0, loc=mu1, scale=sigma1) + sigma0**2 / (2 * sigma1**2)
    return cross - stats.norm.entropy(loc=mu0, scale=sigma0)


def torch_kl_normal(mu0, sigma0, mu1, sigma1):
    """``torch.distributions.kl_divergence(Normal(mu0, sigma0), Normal(mu1, sigma1))`` in float64, as NumPy."""
    import torch

    t = [torch.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=float))) for a in (mu0, sigma0, mu1, sigma1)]
    p, q = torch.distributions.Normal(t[0], t[1]), torch.distributions.Normal(t[2], t[3])
    return torch.distributions.kl_divergence(p, q).numpy()


def torch_kl_categorical(p, q):
    """``torch.distributions.kl_divergence(Categorical(probs=p), Categorical(probs=q))`` in float64, as NumPy."""
    import torch

    tp, tq = (torch.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=float))) for a in (p, q))
    cp, cq = torch.distributions.Categorical(probs=tp), torch.distributions.Categorical(probs=tq)
    return torch.distributions.kl_divergence(cp, cq).numpy()


def _textbook_rows(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return naive_kl_discrete(p, q)


def _rel_entr_rows(p, q):
    from scipy.special import rel_entr

    return rel_entr(p, q).sum(axis=-1)


#: ``key: (label, function)`` of the Gaussian rows of :func:`accuracy_table`
GAUSSIAN_METHODS = {
    "klcourse": ("klcourse.kl_normal", kl_normal),
    "textbook": ("textbook formula (NumPy)", naive_kl_normal),
    "scipy": ("SciPy: −norm.logpdf + σ0²/2σ1² − norm.entropy", scipy_kl_normal),
    "torch": ("torch.distributions.kl_divergence(Normal, Normal), float64", torch_kl_normal),
}

#: ``key: (label, function)`` of the discrete rows of :func:`accuracy_table`
DISCRETE_METHODS = {
    "klcourse": ("klcourse.kl_divergence", lambda p, q: kl_divergence(p, q)),
    "textbook": ("textbook np.sum(p * np.log(p / q))", _textbook_rows),
    "scipy": ("SciPy: rel_entr(p, q).sum()", _rel_entr_rows),
    "torch": ("torch.distributions.kl_divergence(Categorical, Categorical), float64", torch_kl_categorical),
}


# ----------------------------------------------------------------------------- the table
def _row(family, key, method, values, reference):
    values = np.asarray(values, dtype=float)
    err = relative_errors(values, reference)
    return {
        "family": family,
        "key": key,
        "method": method,
        "pairs": int(values.size),
        "worst_rel_err": float(np.max(err)),
        "share_inaccurate": float(np.mean(err > INACCURATE)),
        "share_negative": float(np.mean(values < 0)),
    }


def accuracy_table(n_gaussian=4000, discrete_seeds=range(2), n_outcomes=100, seed=0):
    """Side-by-side accuracy of klcourse, the textbook formula, SciPy and ``torch.distributions``.

    Two stress sets of (mostly) nearly identical pairs, each scored against ``mpmath`` at
    :data:`DPS` digits on the very same float64 inputs:

    * Gaussian pairs: :func:`gaussian_stress_set` ``(n_gaussian, seed)``;
    * discrete pairs: :func:`discrete_stress_set` with ``discrete_seeds`` and ``n_outcomes``.

    With the defaults it runs in about a second (the full-size version is
    ``benchmarks/accuracy.py``).

    Returns
    -------
    list of dict
        One row per (family, method): ``family`` (``"gaussian"`` or ``"discrete"``), ``key``
        (``"klcourse"``, ``"textbook"``, ``"scipy"``, ``"torch"``), ``method`` (a label),
        ``pairs``, ``worst_rel_err`` (max relative error vs
        mpmath; ``inf`` for a nonzero answer where the truth is 0 or a non-finite answer),
        ``share_inaccurate`` (fraction with relative error above :data:`INACCURATE`) and
        ``share_negative`` (fraction of results < 0, which a KL never is).
    """
    rows = []
    params = gaussian_stress_set(n_gaussian, seed)
    reference = mp_kl_normal(*params)
    with np.errstate(all="ignore"):
        for key, (label, fn) in GAUSSIAN_METHODS.items():
            rows.append(_row("gaussian", key, label, fn(*params), reference))
    p, q, _ = discrete_stress_set(n_outcomes=n_outcomes, seeds=discrete_seeds)
    reference = mp_kl_discrete(p, q)
    with np.errstate(all="ignore"):
        for key, (label, fn) in DISCRETE_METHODS.items():
            rows.append(_row("discrete", key, label, fn(p, q), reference))
    return rows


def _fmt_err(x):
    if math.isinf(x):
        return "inf"
    return "0" if x == 0 else f"{x:.1e}"


_FAMILY_LABELS = {"gaussian": "Gaussian pairs", "discrete": "discrete pairs"}


def accuracy_table_html(rows):
    """Render :func:`accuracy_table` rows as an HTML table."""
    head = ("<tr><th>stress set</th><th>method</th><th>pairs</th><th>worst relative error</th>"
            f"<th>share with relative error &gt; {INACCURATE:.0e}</th><th>share negative</th></tr>")
    body = []
    for r in rows:
        family = _FAMILY_LABELS.get(r["family"], r["family"])
        body.append(
            f"<tr><td>{html.escape(family)}</td><td><code>{html.escape(r['method'])}</code></td>"
            f"<td>{r['pairs']:,}</td><td>{_fmt_err(r['worst_rel_err'])}</td>"
            f"<td>{100 * r['share_inaccurate']:.1f} %</td><td>{100 * r['share_negative']:.1f} %</td></tr>"
        )
    return f'<table class="klcourse-accuracy">{head}{"".join(body)}</table>'


# ----------------------------------------------------------------------------- sweeps (figures)
SWEEP_GAUSSIAN_METHODS = {
    "textbook formula": naive_kl_normal,
    "torch.distributions (float64)": torch_kl_normal,
    "expm1(u) − u, subtracted naively": naive_kl_normal_expm1,
    "klcourse.kl_normal": kl_normal,
}

SWEEP_DISCRETE_METHODS = {
    "textbook sum(p log(p/q))": naive_kl_discrete,
    "SciPy rel_entr(p, q).sum()": _rel_entr_rows,
    "sum p (r − log1p(r)), subtracted naively": naive_kl_discrete_log1p,
    "klcourse.kl_divergence": lambda p, q: kl_divergence(p, q),
}


#: relative differences swept in chapter 5's error figure: 1e-1 down to 1e-13, two per decade
SWEEP_DELTAS = tuple(10.0 ** (-k / 2) for k in range(2, 27))


def gaussian_sweep(deltas=SWEEP_DELTAS, n_draws=16, seed=0, methods=None, return_params=False):
    """Gaussian pairs with ``sigma1 = sigma0 (1 +- delta)`` and equal means, scored by method.

    For each ``delta`` and draw: ``sigma0 = exp(U(-3, 3))``, a random sign, ``mu0 = mu1``.
    Returns ``(reference, values)``: the mpmath divergences, shape ``(len(deltas), n_draws)``,
    and ``{method: array of the same shape}`` for ``methods`` (default
    :data:`SWEEP_GAUSSIAN_METHODS`).  The draws depend only on ``len(deltas)``, ``n_draws`` and
    ``seed``, not on the methods.  With ``return_params=True`` a third item is added: the
    parameters ``(mu0, sigma0, mu1, sigma1)``, arrays of the same shape (standard deviations).
    """
    rng = np.random.default_rng(seed)
    deltas = np.asarray(deltas, dtype=float)[:, None]
    s0 = np.exp(rng.uniform(-3, 3, (deltas.size, n_draws)))
    s1 = s0 * (1 + rng.choice([-1.0, 1.0], s0.shape) * deltas)
    m = rng.normal(0, 1, s0.shape)
    reference = mp_kl_normal(m, s0, m, s1)
    with np.errstate(all="ignore"):
        values = {name: np.asarray(fn(m, s0, m, s1), dtype=float)
                  for name, fn in (methods or SWEEP_GAUSSIAN_METHODS).items()}
    return (reference, values, (m, s0, m, s1)) if return_params else (reference, values)


def discrete_sweep(deltas=SWEEP_DELTAS, n_draws=8, n_outcomes=50, seed=0, return_params=False):
    """Exactly normalised pairs (:func:`dyadic_near_pair`) at each ``delta``, scored by method.

    Returns ``(reference, values)`` as :func:`gaussian_sweep`, for :data:`SWEEP_DISCRETE_METHODS`;
    with ``return_params=True`` also ``(p, q)``, shape ``(len(deltas), n_draws, n_outcomes)``.
    """
    rng = np.random.default_rng(seed)
    pairs = [[dyadic_near_pair(d, n_outcomes, rng) for _ in range(n_draws)] for d in deltas]
    p = np.array([[a for a, _ in row] for row in pairs])
    q = np.array([[b for _, b in row] for row in pairs])
    reference = mp_kl_discrete(p.reshape(-1, n_outcomes), q.reshape(-1, n_outcomes)).reshape(p.shape[:2])
    with np.errstate(all="ignore"):
        values = {name: np.asarray(fn(p, q), dtype=float) for name, fn in SWEEP_DISCRETE_METHODS.items()}
    return (reference, values, (p, q)) if return_params else (reference, values)


def float32_kl_div_sweep(deltas, n_classes=1000, n_draws=8, seed=0):
    """``F.kl_div`` on nearly identical softmax distributions, in three precisions.

    Logits ``z_p ~ N(0, 2^2)`` and ``z_q = z_p + delta * N(0, 1)``, both stored as float32 (as a
    network would produce them).  Methods, each ``F.kl_div(log q, p, reduction="sum")`` =
    ``D(P || Q)``:

    * ``"float32 throughout"``: ``log_softmax`` and the sum in float32;
    * ``"float32 log-probs, summed in float64"``: the log-probabilities cast up after ``log_softmax``;
    * ``"logits cast to float64 first"``: ``log_softmax`` and the sum in float64.

    The reference is :func:`klcourse.kl_divergence` on the float64 softmax of the same float32
    logits.  Returns ``(reference, values)`` with arrays of shape ``(len(deltas), n_draws)``.
    """
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    shape = (len(deltas), n_draws)
    reference = np.empty(shape)
    names = ("float32 throughout", "float32 log-probs, summed in float64", "logits cast to float64 first")
    values = {name: np.empty(shape) for name in names}
    for i, delta in enumerate(deltas):
        for j in range(n_draws):
            zp = torch.from_numpy((2 * rng.standard_normal(n_classes)).astype(np.float32))
            zq = torch.from_numpy((zp.numpy() + delta * rng.standard_normal(n_classes)).astype(np.float32))
            p64, q64 = torch.softmax(zp.double(), -1), torch.softmax(zq.double(), -1)
            reference[i, j] = kl_divergence(p64.numpy(), q64.numpy(), normalize=True)
            lq32, p32 = torch.log_softmax(zq, -1), torch.softmax(zp, -1)
            variants = (F.kl_div(lq32, p32, reduction="sum"),
                        F.kl_div(lq32.double(), p32.double(), reduction="sum"),
                        F.kl_div(torch.log_softmax(zq.double(), -1), p64, reduction="sum"))
            for name, value in zip(names, variants, strict=True):
                values[name][i, j] = float(value)
    return reference, values


# ----------------------------------------------------------------------------- float16 and bfloat16
#: the precisions of :func:`low_precision_errors`, widest first
LOW_PRECISION_DTYPES = ("float64", "float32", "bfloat16", "float16")


def unit_roundoff(dtype) -> float:
    """``u = eps / 2``, the largest relative error of rounding a number to ``dtype`` (a torch dtype name)."""
    import torch

    if dtype not in LOW_PRECISION_DTYPES:
        raise ValueError(f"dtype must be one of {LOW_PRECISION_DTYPES}, got {dtype!r}")
    return float(torch.finfo(getattr(torch, dtype)).eps) / 2


def low_precision_errors(deltas=(1.0, 0.1, 0.01), dtypes=LOW_PRECISION_DTYPES, n_classes=1000, n_draws=8, seed=0):
    r"""Relative errors of ``D(P || Q)`` and of its gradient computed in float64/float32/bfloat16/float16.

    Logits ``z_p ~ N(0, 2^2)`` and ``z_q = z_p + delta * N(0, 1)`` over ``n_classes`` classes (seeded), stored
    in ``dtype`` as a network in that precision would hold them.  Everything is then computed in ``dtype``:

    * ``"log-space"``: :math:`\sum_i p_i (\log p_i - \log q_i)` from ``log_softmax`` (what
      :func:`kl_from_logits` and ``F.kl_div`` do);
    * ``"ratio"``: :math:`\sum_i p_i \log(p_i / q_i)` from ``softmax``, the ratio formed first;
    * ``"gradient"``: the autograd gradient of the log-space value with respect to the model's logits,
      whose exact value is :math:`q - p`; its error is the relative 2-norm error.

    The references are computed in float64 from the *same stored* logits (so only the arithmetic is
    measured, not the rounding of the inputs): :func:`klcourse.kl_divergence` of the float64 softmaxes for
    the values and ``softmax(z_q) - softmax(z_p)`` for the gradient.

    Returns
    -------
    dict
        ``{(dtype, delta): {"log-space": array, "ratio": array, "gradient": array}}``, each of shape
        ``(n_draws,)``.
    """
    import torch

    for dtype in dtypes:
        unit_roundoff(dtype)  # validates the name
    rng = np.random.default_rng(seed)
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for delta in deltas:
            draws = [(2 * rng.standard_normal(n_classes), None) for _ in range(n_draws)]
            draws = [(zp, zp + delta * rng.standard_normal(n_classes)) for zp, _ in draws]
            for dtype in dtypes:
                errs = {"log-space": np.empty(n_draws), "ratio": np.empty(n_draws), "gradient": np.empty(n_draws)}
                for j, (zp_np, zq_np) in enumerate(draws):
                    zp = torch.from_numpy(zp_np).to(getattr(torch, dtype))
                    zq = torch.from_numpy(zq_np).to(getattr(torch, dtype)).requires_grad_(True)
                    log_p, log_q = torch.log_softmax(zp, -1), torch.log_softmax(zq, -1)
                    value = (log_p.exp() * (log_p - log_q)).sum()
                    (grad,) = torch.autograd.grad(value, zq)
                    p, q = torch.softmax(zp, -1), torch.softmax(zq.detach(), -1)
                    ratio = torch.where(p > 0, p * torch.log(p / q), torch.zeros_like(p)).sum()
                    p64, q64 = torch.softmax(zp.double(), -1), torch.softmax(zq.detach().double(), -1)
                    reference = kl_divergence(p64.numpy(), q64.numpy(), normalize=True)
                    grad_ref = q64 - p64
                    errs["log-space"][j] = abs(float(value.detach()) - reference) / reference
                    errs["ratio"][j] = abs(float(ratio) - reference) / reference
                    errs["gradient"][j] = float((grad.double() - grad_ref).norm() / grad_ref.norm())
                out[(dtype, float(delta))] = errs
    finally:
        torch.set_num_threads(threads)
    return out


# ----------------------------------------------------------------------------- backward stability, gradients
def _xlogy_rows(p, q):
    from scipy.special import xlogy

    return np.sum(xlogy(p, p) - xlogy(p, q), axis=-1)


def _torch_kl_div_rows(p, q):
    import torch
    import torch.nn.functional as F

    tp, tq = (torch.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=float))) for a in (p, q))
    return F.kl_div(tq.log(), tp, reduction="none").sum(-1).numpy()


#: the discrete routes whose backward stability chapter 5 classifies: ``label: function(p, q)`` on rows
BACKWARD_ROUTES = {
    "textbook np.sum(p * np.log(p / q))": _textbook_rows,
    "log space: np.sum(xlogy(p, p) − xlogy(p, q))": _xlogy_rows,
    "F.kl_div(q.log(), p, reduction='sum')": _torch_kl_div_rows,
    "torch.distributions (Categorical)": torch_kl_categorical,
    "SciPy rel_entr(p, q).sum()": _rel_entr_rows,
    "sum p (r − log1p(r)), subtracted naively": naive_kl_discrete_log1p,
    "klcourse.kl_divergence": lambda p, q: kl_divergence(p, q),
}

#: error / (kappa u) up to which chapter 5 calls a route backward stable ("a few u" of input perturbation)
STABLE_RATIO = 10.0


def backward_stability_rows(p, q, reference, kappa_simplex, kappa_unconstrained, routes=None):
    r"""Forward error of each route divided by ``kappa * u``, in both perturbation classes.

    The ratio :math:`|\hat D - D| / (\kappa\, u\, D)` counts units of roundoff ``u = 2**-53``. It equals the
    componentwise backward error (in units of ``u``) only to first order: while ``ratio * u`` is small against
    the relative difference :math:`\delta = \max_i |q_i/p_i - 1|` of the pair, so that :math:`\kappa` does not
    change over the perturbation. Where ``ratio * u >= delta``, or (on the simplex) the computed value is
    negative — no perturbation that keeps the inputs distributions explains :math:`\hat D < 0` — the ratio is
    not a backward error, and the pair is counted as *beyond first order*. A route is called backward stable
    in a class when no pair is beyond first order and the ratio stays below :data:`STABLE_RATIO` on every
    pair.

    Parameters
    ----------
    p, q : numpy.ndarray
        Pairs of probability vectors with positive entries, shape ``(..., n)``, exactly normalised (e.g. from
        :func:`dyadic_near_pair`, where the two classes share the same exact value).
    reference : numpy.ndarray
        The exact divergences (e.g. :func:`mp_kl_discrete`), shape ``(...)``.
    kappa_simplex, kappa_unconstrained : numpy.ndarray
        :func:`kl_discrete_condition` of each pair in the two classes, shape ``(...)``.
    routes : dict, optional
        ``label: function(p, q)``; default :data:`BACKWARD_ROUTES`.

    Returns
    -------
    list of dict
        One per route: ``route``, ``median_simplex``, ``max_simplex``, ``median_unconstrained``,
        ``max_unconstrained`` (ratios forward error / (kappa u)); ``beyond_simplex``, ``beyond_unconstrained``
        (number of pairs beyond first order), ``negative`` (number of computed values < 0) and the booleans
        ``stable_simplex``, ``stable_unconstrained``.
    """
    reference = np.asarray(reference, dtype=float)
    if np.shape(kappa_simplex) != reference.shape or np.shape(kappa_unconstrained) != reference.shape:
        raise ValueError("reference and both condition numbers must have the same shape")
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape or p.shape[:-1] != reference.shape:
        raise ValueError("p and q must have shape reference.shape + (n,)")
    if np.any(p <= 0) or np.any(q <= 0):
        raise ValueError("p and q must have positive entries")
    delta = np.max(np.abs(q / p - 1), axis=-1)
    u = np.finfo(np.float64).eps / 2
    rows = []
    for label, fn in (routes or BACKWARD_ROUTES).items():
        with np.errstate(all="ignore"):
            value = np.asarray(fn(p, q), dtype=float)
            err = relative_errors(value, reference)
        rs, rf = err / (np.asarray(kappa_simplex) * u), err / (np.asarray(kappa_unconstrained) * u)
        negative = value < 0
        beyond_s = negative | ~(rs * u < delta)
        beyond_f = ~(rf * u < delta)
        rows.append({"route": label,
                     "median_simplex": float(np.median(rs)), "max_simplex": float(np.max(rs)),
                     "median_unconstrained": float(np.median(rf)), "max_unconstrained": float(np.max(rf)),
                     "beyond_simplex": int(beyond_s.sum()), "beyond_unconstrained": int(beyond_f.sum()),
                     "negative": int(negative.sum()),
                     "stable_simplex": bool(np.max(rs) <= STABLE_RATIO and not beyond_s.any()),
                     "stable_unconstrained": bool(np.max(rf) <= STABLE_RATIO and not beyond_f.any())})
    return rows


def _stable_cell(stable, beyond):
    if beyond:
        return f"no: not backward stable (beyond first order) on {beyond} pairs"
    return "yes" if stable else "no"


def backward_stability_html(rows):
    """Render :func:`backward_stability_rows` as an HTML table."""
    head = ("<tr><th>route</th><th>forward error / (κ<sub>Δ</sub> u), median</th><th>worst</th>"
            "<th>backward stable on the simplex?</th><th>forward error / (κ<sub>F</sub> u), worst</th>"
            "<th>backward stable off it?</th></tr>")
    body = [f"<tr><td><code>{html.escape(r['route'])}</code></td><td>{_fmt_err(r['median_simplex'])}</td>"
            f"<td>{_fmt_err(r['max_simplex'])}</td>"
            f"<td>{_stable_cell(r['stable_simplex'], r.get('beyond_simplex', 0))}</td>"
            f"<td>{_fmt_err(r['max_unconstrained'])}</td>"
            f"<td>{_stable_cell(r['stable_unconstrained'], r.get('beyond_unconstrained', 0))}</td>"
            "</tr>" for r in rows]
    return f'<table class="klcourse-accuracy">{head}{"".join(body)}</table>'


def torch_r_minus_log1p(r):
    r"""``r - log1p(r)`` for a torch tensor, accurate for tiny ``|r|`` and differentiable (autograd).

    For ``|r| <= 1/4`` it uses ``log1p(r) = 2 atanh(v)`` with ``v = r/(2 + r)``, so that
    ``r - log1p(r) = v (r - 2 v^2 A(v^2))``, ``A(w) = 1/3 + w/5 + w^2/7 + ...`` (12 terms: ``v^2 <= 1/49``);
    no step subtracts nearly equal numbers, and autograd's derivative ``r/(1 + r)`` keeps its relative
    accuracy too.  Elsewhere ``r - log1p(r)`` directly.  ``inf`` at ``r = -1``.

    Raises
    ------
    ValueError
        ``r < -1`` or NaN.
    """
    import torch

    if not isinstance(r, torch.Tensor):
        r = torch.as_tensor(np.asarray(r, dtype=float))
    if torch.isnan(r).any() or (r < -1).any():
        raise ValueError("torch_r_minus_log1p needs r >= -1")
    small = r.abs() <= 0.25
    rs = torch.where(small, r, torch.zeros_like(r))
    v = rs / (2 + rs)
    w = v * v
    series = torch.zeros_like(r)
    for k in reversed(range(12)):
        series = series * w + 1.0 / (2 * k + 3)
    near = v * (rs - 2 * w * series)
    rb = torch.where(small, torch.ones_like(r), r)
    return torch.where(small, near, rb - torch.log1p(rb))


#: the autodiff routes of :func:`softmax_value_gradient_errors`
VALUE_GRADIENT_ROUTES = (
    "textbook: sum p log(p / softmax(z))",
    "log space: F.kl_div(log_softmax(z), p)",
    "stable: sum p ψ((q − p)/p)",
)


def _route_values(zp, zq, route):
    import torch
    import torch.nn.functional as F

    p = torch.softmax(zp, -1)
    if route == VALUE_GRADIENT_ROUTES[0]:
        return (p * torch.log(p / torch.softmax(zq, -1))).sum()
    if route == VALUE_GRADIENT_ROUTES[1]:
        return F.kl_div(torch.log_softmax(zq, -1), p, reduction="sum")
    q = torch.softmax(zq, -1)
    return (p * torch_r_minus_log1p((q - p) / p)).sum()


def softmax_value_gradient_errors(deltas, n_draws=5, n_classes=50, seed=0, dps=DPS):
    r"""Relative errors of ``D(softmax(z_p) || softmax(z_q))`` and of its autodiff gradient in ``z_q``, float64.

    Logits ``z_p ~ N(0, 1)`` and ``z_q = z_p + delta w``, ``w ~ N(0, 1)``, over ``n_classes`` classes
    (seeded): ``q_i/p_i - 1`` is of order ``delta``.  Each route of :data:`VALUE_GRADIENT_ROUTES` is
    computed with torch in float64 and differentiated with autograd.  The references are exact functions
    of the float64 logits, in ``dps``-digit arithmetic: the divergence of the two softmax distributions,
    and its gradient with respect to ``z_q``, ``softmax(z_q) - softmax(z_p)``.  Two *floors* show what any
    method that starts from the float64 probabilities ``p = softmax(z_p)``, ``q = softmax(z_q)`` (each
    rounded, relative error ``~u``) must lose: the exact divergence of the rounded vectors (renormalised)
    and their exact difference ``q - p``.

    Returns
    -------
    dict
        ``"value"`` and ``"gradient"``: ``{route: array (len(deltas), n_draws)}`` of relative errors
        (the gradient's in the 2-norm); ``"value_floor"``, ``"gradient_floor"``: arrays of that shape;
        ``"kappa_simplex"``: :func:`kl_discrete_condition` of the rounded pairs.

    Raises
    ------
    ValueError
        A ``delta <= 0``, ``n_draws < 1`` or ``n_classes < 2``.
    """
    import torch

    deltas = np.asarray(deltas, dtype=float)
    if deltas.ndim != 1 or np.any(~(deltas > 0)):
        raise ValueError("deltas must be a 1-D sequence of numbers > 0")
    if int(n_draws) < 1 or int(n_classes) < 2:
        raise ValueError("n_draws must be >= 1 and n_classes >= 2")
    rng = np.random.default_rng(seed)
    shape = (deltas.size, int(n_draws))
    out = {"value": {r: np.empty(shape) for r in VALUE_GRADIENT_ROUTES},
           "gradient": {r: np.empty(shape) for r in VALUE_GRADIENT_ROUTES},
           "value_floor": np.empty(shape), "gradient_floor": np.empty(shape), "kappa_simplex": np.empty(shape)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, delta in enumerate(deltas):
            for j in range(int(n_draws)):
                zp_np = rng.standard_normal(n_classes)
                zq_np = zp_np + delta * rng.standard_normal(n_classes)
                zp = torch.from_numpy(zp_np)
                with mpmath.workdps(dps):
                    lse = [mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in z.tolist()))
                           for z in (zp_np, zq_np)]
                    lp = [mpmath.mpf(v) - lse[0] for v in zp_np.tolist()]
                    lq = [mpmath.mpf(v) - lse[1] for v in zq_np.tolist()]
                    kl = mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(lp, lq, strict=True))
                    g_exact = [mpmath.exp(b) - mpmath.exp(a) for a, b in zip(lp, lq, strict=True)]
                    g_norm = mpmath.sqrt(mpmath.fsum(g * g for g in g_exact))
                    p_hat = torch.softmax(zp, -1).numpy()
                    q_hat = torch.softmax(torch.from_numpy(zq_np), -1).numpy()
                    out["value_floor"][i, j] = float(abs(_mp_kl_row(p_hat.tolist(), q_hat.tolist()) - kl) / kl)
                    diff = [mpmath.mpf(b) - mpmath.mpf(a) for a, b in zip(p_hat.tolist(), q_hat.tolist(),
                                                                          strict=True)]
                    out["gradient_floor"][i, j] = float(
                        mpmath.sqrt(mpmath.fsum((d - g) ** 2 for d, g in zip(diff, g_exact, strict=True))) / g_norm)
                    for route in VALUE_GRADIENT_ROUTES:
                        zq = torch.from_numpy(zq_np.copy()).requires_grad_(True)
                        value = _route_values(zp, zq, route)
                        (grad,) = torch.autograd.grad(value, zq)
                        out["value"][route][i, j] = float(abs(mpmath.mpf(float(value.detach())) - kl) / kl)
                        err = mpmath.fsum((mpmath.mpf(a) - g) ** 2 for a, g in zip(grad.tolist(), g_exact,
                                                                                  strict=True))
                        out["gradient"][route][i, j] = float(mpmath.sqrt(err) / g_norm)
                out["kappa_simplex"][i, j] = kl_discrete_condition(p_hat, q_hat)
    finally:
        torch.set_num_threads(threads)
    return out
