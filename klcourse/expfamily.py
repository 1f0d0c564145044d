"""Closed-form KL divergences within exponential families (chapter 3, "beyond the Gaussian").

For a family with densities ``p_theta(x) = h(x) exp(theta . T(x) - A(theta))`` the divergence
is the Bregman divergence of the log-partition function ``A``:

    D(P_theta0 || P_theta1) = A(theta1) - A(theta0) - grad A(theta0) . (theta1 - theta0).

:func:`kl_exponential_family` evaluates exactly that, for any family given ``A`` and its
gradient (the mean of ``T``); it is the route the chapter uses to *check* the dedicated
functions below.  Typed literally it subtracts numbers of size ``A`` to get an answer that
may be 1e-20, so the dedicated functions rewrite each divergence as a sum of terms that are
each >= 0 and each evaluated without cancellation, built from one kernel,

    b(a, c) = c - a - a log(c / a) = a * g((c - a) / a),   g(s) = s - log1p(s) >= 0,

the Bregman divergence of ``-log`` scaled by ``a`` (``g`` by its series near 0, and ``c - a``
exact by Sterbenz's lemma when ``c/a`` is in [1/2, 2]):

* Bernoulli: ``b(p, q) + b(1 - p, 1 - q)`` (the second with ``c - a = p - q`` formed directly),
  which is :func:`klcourse.numerics.kl_bernoulli` (chapter 5) with argument checks added;
* categorical: :func:`klcourse.kl_divergence` (chapter 1), which already has these properties;
* Poisson: ``b(lam0, lam1)``;  exponential: ``b(rate0, rate1) / rate0``;
* gamma: see :func:`kl_gamma` (a shape part split off Stirling's series, plus a mean part).

Every function returns ``D(P || Q)`` in nats with ``P`` the distribution of the *first*
parameters, is never negative, is exactly 0 for equal parameters, returns ``inf`` where the
divergence is infinite, broadcasts its arguments like :func:`klcourse.kl_normal` (a Python
float when every input is a scalar), and raises ``ValueError`` naming the problem for bad
input.

References
----------
Banerjee, A., Merugu, S., Dhillon, I. S. & Ghosh, J. (2005). Clustering with Bregman
divergences. *JMLR* 6, 1705-1749 (sec. 4: exponential families and Bregman divergences).
Nielsen, F. & Nock, R. (2010). Entropies and cross-entropies of exponential families.
*Proc. IEEE ICIP*, 3621-3624.
Wainwright, M. J. & Jordan, M. I. (2008). Graphical models, exponential families, and
variational inference. *Found. Trends Mach. Learn.* 1(1-2), ch. 3.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special

from klcourse._validate import as_float_array, broadcast_all, scalar_or_array
from klcourse.divergences import _phi
from klcourse.gaussians import expm1mx
from klcourse.numerics import kl_bernoulli as _stable_kl_bernoulli

__all__ = [
    "kl_bernoulli",
    "kl_exponential",
    "kl_exponential_family",
    "kl_gamma",
    "kl_poisson",
]

#: Bernoulli numbers B_2, B_4, ..., B_18 for Stirling's series of log Gamma.
_BERNOULLI = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510, 43867 / 798)

#: from this shape on, the Stirling remainder and its derivatives come from the asymptotic series
#: (its first omitted term is below 1e-18 of the sum there); below it, from scipy's special functions
_STIRLING_FROM = 20.0

#: Gauss-Legendre nodes and weights on [0, 1] for the shape part of nearly equal shapes
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_GL_NODES, _GL_WEIGHTS = 0.5 * (_GL_NODES + 1.0), 0.5 * _GL_WEIGHTS


# ----------------------------------------------------------------------------- validation
def _params(values, names, *, positive=(), nonnegative=(), unit=()):
    arrays = [as_float_array(v, n) for v, n in zip(values, names, strict=True)]
    for arr, name in zip(arrays, names, strict=True):
        if not arr.size:
            continue
        low = float(np.min(arr))
        if name in positive and low <= 0:
            raise ValueError(f"{name} must be strictly positive (min {low:.3g})")
        if name in nonnegative and low < 0:
            raise ValueError(f"{name} must be >= 0 (min {low:.3g}); a negative rate is not a distribution")
        if name in unit and (low < 0 or float(np.max(arr)) > 1):
            bad = low if low < 0 else float(np.max(arr))
            raise ValueError(f"{name} must be a probability in [0, 1], got {bad:.3g}")
    return broadcast_all(arrays, names)


# ----------------------------------------------------------------------------- the kernel
def _log_ratio(c: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log(c/a), c/a)`` for ``a, c > 0`` to a few ulp relative, also when ``c/a`` is near 1.

    ``log c - log a`` where the ratio leaves the float64 range (no cancellation there).
    """
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        r = c / a
        near = (r >= 0.5) & (r <= 2.0)  # there c - a is exact (Sterbenz): log1p keeps x's relative accuracy
        x = np.where(near, np.log1p((c - a) / a), np.log(r))
        bad = ~((r >= np.finfo(np.float64).tiny) & np.isfinite(r))
        if np.any(bad):
            x = np.where(bad, np.log(c) - np.log(a), x)
    return x, r


def _breg_log(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``c - a - a log(c/a) >= 0`` for ``a, c >= 0`` (``c`` at ``a = 0``, ``inf`` at ``c = 0 < a``)."""
    a, c = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(c, dtype=np.float64))
    out = np.zeros(a.shape)
    live = a > 0
    out[~live] = c[~live]  # a log a -> 0: the divergence of a point mass / empty class
    dead = live & (c == 0)
    out[dead] = np.inf
    live &= c > 0
    if not np.any(live):
        return out
    a_l, c_l = a[live], c[live]
    d_l = c_l - a_l
    x, r = _log_ratio(c_l, a_l)
    near = (r >= 0.5) & (r <= 2.0)
    val = np.empty(a_l.shape)
    val[near] = a_l[near] * _phi(d_l[near] / a_l[near])
    far = ~near
    with np.errstate(over="ignore", invalid="ignore"):
        val[far] = (c_l[far] - a_l[far]) - a_l[far] * x[far]
    out[live] = np.maximum(val, 0.0)
    return out


# ----------------------------------------------------------------------------- Bernoulli
def kl_bernoulli(p, q):
    r"""KL divergence ``D(Bern(p) || Bern(q))`` between Bernoulli distributions.

    .. math::

        D = p\log\frac{p}{q} + (1-p)\log\frac{1-p}{1-q}
          = b(p, q) + b(1-p, 1-q), \qquad b(a, c) = c - a - a\log\frac{c}{a} \ge 0,

    the second form being what is computed, by chapter 5's
    :func:`klcourse.numerics.kl_bernoulli` (this function adds the argument checks): each
    term is non-negative, and the complement's difference ``(1-q) - (1-p)`` is formed as
    ``p - q``, so nearly equal parameters keep full relative accuracy.  In natural parameters
    ``theta = log(p/(1-p))`` it is the Bregman divergence of the softplus
    ``A(theta) = log(1 + e^theta)``.

    Parameters
    ----------
    p : array_like
        Success probability of ``P``, the first argument, in [0, 1].
    q : array_like
        Success probability of ``Q``, in [0, 1].  ``p`` and ``q`` broadcast together.

    Returns
    -------
    float or numpy.ndarray
        ``D(P || Q)`` in nats, in [0, inf]; a Python float when both inputs are scalars.
        Exactly 0 when ``p == q``.  Edge cases: ``inf`` when ``q = 0 < p`` or ``q = 1 > p``
        (``P`` puts mass where ``Q`` has none; never clipped to a large finite number);
        ``p = 0`` gives ``-log(1 - q)`` and ``p = 1`` gives ``-log q`` (``0 log 0 = 0``).

    Raises
    ------
    ValueError
        ``p`` or ``q`` outside [0, 1], NaN or inf, non-numeric input, or shapes that do
        not broadcast.

    References
    ----------
    Cover & Thomas (2006), *Elements of Information Theory*, 2nd ed., eq. (2.26) with two
    outcomes; Banerjee et al. (2005), *JMLR* 6, table 2.

    Examples
    --------
    >>> round(kl_bernoulli(0.5, 0.9), 6)
    0.510826
    >>> kl_bernoulli(0.3, 0.0)
    inf
    """
    p, q = _params((p, q), ("p", "q"), unit=("p", "q"))
    return scalar_or_array(_stable_kl_bernoulli(p, q))


# ----------------------------------------------------------------------------- Poisson
def kl_poisson(lam0, lam1):
    r"""KL divergence ``D(Poisson(lam0) || Poisson(lam1))``.

    .. math::

        D = \lambda_0\log\frac{\lambda_0}{\lambda_1} - \lambda_0 + \lambda_1
          = \lambda_0\, g\Big(\frac{\lambda_1-\lambda_0}{\lambda_0}\Big),
          \qquad g(s) = s - \log(1+s) \ge 0,

    the Bregman divergence of ``A(theta) = e^theta`` at ``theta = log lam``.  The second
    form is what is computed, with ``g`` by its series near 0, so the result is
    non-negative and keeps its relative accuracy for nearly equal rates.

    Parameters
    ----------
    lam0 : array_like
        Rate (= mean) of ``P``, the first argument; >= 0.
    lam1 : array_like
        Rate of ``Q``; >= 0.  The two broadcast together.

    Returns
    -------
    float or numpy.ndarray
        ``D(P || Q)`` in nats, a Python float for scalar inputs.  Exactly 0 when
        ``lam0 == lam1``.  Edge cases: ``lam0 = 0`` (the point mass at 0) gives ``lam1``;
        ``lam1 = 0 < lam0`` gives ``inf`` (``Q`` puts no mass on 1, 2, ...).

    Raises
    ------
    ValueError
        A negative rate, NaN or inf, non-numeric input, or shapes that do not broadcast.

    References
    ----------
    Banerjee et al. (2005), *JMLR* 6, table 2 (Poisson row); Murphy (2022),
    *Probabilistic Machine Learning: An Introduction*, sec. 6.2 and 3.4.

    Examples
    --------
    >>> round(kl_poisson(2.0, 3.0), 6)
    0.18907
    """
    lam0, lam1 = _params((lam0, lam1), ("lam0", "lam1"), nonnegative=("lam0", "lam1"))
    return scalar_or_array(_breg_log(lam0, lam1))


# ----------------------------------------------------------------------------- exponential
def kl_exponential(rate0, rate1):
    r"""KL divergence ``D(Exp(rate0) || Exp(rate1))`` between exponential distributions.

    .. math::

        D = \log\frac{\lambda_0}{\lambda_1} + \frac{\lambda_1}{\lambda_0} - 1
          = r - 1 - \log r, \qquad r = \lambda_1/\lambda_0,

    with densities ``lam * exp(-lam * x)``: the parameters are **rates** (1 / mean), not the
    scales ``scipy.stats.expon(scale=...)`` and ``numpy.random.Generator.exponential``
    take.  Passing scales instead gives the *reverse* divergence.  Computed as
    ``g((rate1 - rate0) / rate0)`` with ``g(s) = s - log(1+s)`` (series near 0).

    Parameters
    ----------
    rate0 : array_like
        Rate of ``P``, the first argument; > 0.
    rate1 : array_like
        Rate of ``Q``; > 0.  The two broadcast together.

    Returns
    -------
    float or numpy.ndarray
        ``D(P || Q)`` in nats, >= 0, exactly 0 for equal rates; a Python float for scalar
        inputs; ``inf`` only if the true value exceeds the float64 range.  It depends on the
        ratio of the rates alone (a change of time unit changes nothing).

    Raises
    ------
    ValueError
        A rate <= 0, NaN or inf, non-numeric input, or shapes that do not broadcast.

    References
    ----------
    Banerjee et al. (2005), *JMLR* 6, table 2 (exponential row); it is
    :func:`kl_gamma` with both shapes 1.

    Examples
    --------
    >>> round(kl_exponential(1.0, 2.0), 6)
    0.306853
    """
    rate0, rate1 = _params((rate0, rate1), ("rate0", "rate1"), positive=("rate0", "rate1"))
    with np.errstate(over="ignore"):  # a true value beyond the float64 range is inf
        return scalar_or_array(_breg_log(rate0, rate1) / rate0)


# ----------------------------------------------------------------------------- gamma
def _stirling_series(x: np.ndarray, derivative: int) -> np.ndarray:
    """The ``derivative``-th derivative (0, 1, 2) of ``mu(x) = lgamma(x) - (x - 1/2) log x + x - log(2 pi)/2``."""
    total = np.zeros_like(x)
    inv = 1.0 / x
    for k, b in reversed(list(enumerate(_BERNOULLI, 1))):
        m = 2 * k
        if derivative == 0:
            term = b / (m * (m - 1)) * inv ** (m - 1)
        elif derivative == 1:
            term = -b / m * inv**m
        else:
            term = b * inv ** (m + 1)
        total += term
    return total


def _stirling_mu(x: np.ndarray, derivative: int = 0) -> np.ndarray:
    """Stirling's remainder ``mu`` (convex, decreasing to 0) or its first two derivatives."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape)
    big = x >= _STIRLING_FROM
    out[big] = _stirling_series(x[big], derivative)
    s = x[~big]
    if derivative == 0:
        out[~big] = scipy.special.gammaln(s) - (s - 0.5) * np.log(s) + s - 0.5 * math.log(2 * math.pi)
    elif derivative == 1:
        out[~big] = scipy.special.digamma(s) - np.log(s) + 0.5 / s
    else:
        out[~big] = scipy.special.polygamma(1, s) - 1.0 / s - 0.5 / (s * s)
    return out


def _shape_part(a0: np.ndarray, a1: np.ndarray) -> np.ndarray:
    """``D(Gamma(a0, rate a0) || Gamma(a1, rate a1))`` (equal means) >= 0.

    The Bregman divergence of ``log Gamma`` minus that of ``a log a - a``, which is the Bregman
    divergence of ``-log(a)/2 + mu(a)`` with ``mu`` Stirling's remainder: ``g(u)/2`` with
    ``u = (a1 - a0)/a0`` plus ``B_mu``.  ``B_mu`` is ``d**2 * int_0^1 (1 - v) mu''(a0 + v d) dv``
    by 16-point Gauss-Legendre for ``a1/a0`` in [1/2, 3/2] (``mu'' > 0``: nothing cancels),
    and ``mu(a1) - mu(a0) - d mu'(a0)`` otherwise (there ``g(u)/2 >= 0.09`` dominates).
    """
    log_part = 0.5 * _breg_log(a0, a1) / a0
    d = a1 - a0
    r = a1 / a0
    near = (r >= 0.5) & (r <= 1.5)
    b_mu = np.empty(a0.shape)
    if np.any(near):
        a0n, dn = a0[near], d[near]
        s = a0n[:, None] + _GL_NODES[None, :] * dn[:, None]
        integrand = (1.0 - _GL_NODES)[None, :] * _stirling_mu(s, 2)
        b_mu[near] = dn * dn * (integrand @ _GL_WEIGHTS)
    far = ~near
    if np.any(far):
        a0f, a1f = a0[far], a1[far]
        b_mu[far] = _stirling_mu(a1f) - _stirling_mu(a0f) - (a1f - a0f) * _stirling_mu(a0f, 1)
    return log_part + np.maximum(b_mu, 0.0)


def kl_gamma(shape0, rate0, shape1, rate1):
    r"""KL divergence ``D(Gamma(shape0, rate0) || Gamma(shape1, rate1))``.

    With densities ``beta**alpha x**(alpha-1) exp(-beta x) / Gamma(alpha)`` (shape
    ``alpha``, **rate** ``beta`` = 1 / scale; mean ``alpha / beta``),

    .. math::

        D = (\alpha_0-\alpha_1)\psi(\alpha_0) - \log\Gamma(\alpha_0) + \log\Gamma(\alpha_1)
            + \alpha_1\log\frac{\beta_0}{\beta_1} + \alpha_0\,\frac{\beta_1-\beta_0}{\beta_0},

    ``psi`` the digamma function: the Bregman divergence of
    ``A(theta) = log Gamma(alpha) - alpha log beta`` at ``theta = (alpha - 1, -beta)``.
    The textbook form subtracts numbers of size ``alpha log alpha`` and loses every digit for
    nearly equal parameters, so what is computed is the split into three terms that are
    each >= 0,

    .. math::

        D = \tfrac12\, g(u) + B_\mu(\alpha_0, \alpha_1) + \alpha_1\,(t - 1 - \log t),
        \qquad u = \frac{\alpha_1-\alpha_0}{\alpha_0},\quad
        t = \frac{\alpha_0/\beta_0}{\alpha_1/\beta_1},

    where ``g(s) = s - log(1+s)``, ``t`` is the ratio of the means, and ``B_mu`` is the
    Bregman divergence of Stirling's remainder ``mu(a) = log Gamma(a) - (a - 1/2) log a + a
    - log(2 pi)/2`` (convex); the first two terms are the divergence between the gammas of
    shapes ``alpha0`` and ``alpha1`` with equal means.

    Parameters
    ----------
    shape0, rate0 : array_like
        Shape ``alpha0 > 0`` and **rate** ``beta0 > 0`` of ``P``, the first argument (not the
        scale ``1/beta`` that ``scipy.stats.gamma(a, scale=...)`` takes).
    shape1, rate1 : array_like
        Shape and rate of ``Q``.  All four broadcast together.

    Returns
    -------
    float or numpy.ndarray
        ``D(P || Q)`` in nats, a Python float for scalar inputs.  Always >= 0, exactly 0
        for equal parameters, unchanged when both rates are multiplied by the same factor.

    Raises
    ------
    ValueError
        A shape or rate <= 0, NaN or inf, non-numeric input, or shapes that do not broadcast.

    Notes
    -----
    Measured against 50-digit mpmath (``tests/test_expfamily.py``): relative error below
    ~1e-13 for shapes in [1e-2, 1e4], unrelated or nearly equal (relative differences down to
    1e-12) parameters.  With ``shape0 = shape1 = 1`` it is :func:`kl_exponential`.

    References
    ----------
    Penny, W. D. (2001). KL-divergences of Normal, Gamma, Dirichlet and Wishart densities.
    Wellcome Department of Cognitive Neurology, UCL; Banerjee et al. (2005), *JMLR* 6;
    Abramowitz & Stegun (1964), 6.1.40 (Stirling's series).

    Examples
    --------
    >>> round(kl_gamma(2.0, 1.0, 3.0, 2.0), 6)
    0.190921
    """
    names = ("shape0", "rate0", "shape1", "rate1")
    a0, b0, a1, b1 = _params((shape0, rate0, shape1, rate1), names, positive=names)
    shape = a0.shape
    a0, b0, a1, b1 = (np.ravel(v) for v in (a0, b0, a1, b1))
    x = _log_ratio(a0, a1)[0] + _log_ratio(b1, b0)[0]  # log t
    with np.errstate(over="ignore"):
        mean_part = a1 * expm1mx(x)
    same = (a0 == a1) & (b0 == b1)
    d = np.where(same, 0.0, _shape_part(a0, a1) + mean_part)
    return scalar_or_array(d.reshape(shape))


# ----------------------------------------------------------------------------- generic
def kl_exponential_family(log_partition, mean_statistic, theta0, theta1):
    r"""KL divergence within an exponential family, as the Bregman divergence of ``A``.

    .. math::

        D(P_{\theta_0}\,\|\,P_{\theta_1}) = A(\theta_1) - A(\theta_0)
            - \nabla A(\theta_0)^\top(\theta_1 - \theta_0),

    for densities ``h(x) exp(theta . T(x) - A(theta))`` with ``grad A(theta) = E[T(X)]``.

    Parameters
    ----------
    log_partition : callable
        ``A(theta)``, returning a number.
    mean_statistic : callable
        ``grad A(theta) = E_theta[T(X)]``, returning an array shaped like ``theta``.
    theta0, theta1 : array_like
        Natural parameters of ``P`` (first argument) and ``Q``: scalars or 1-D vectors of the
        same length, in the interior of the natural parameter space.

    Returns
    -------
    float
        ``D`` in nats, evaluated literally.  This is the route to *check* a closed form:
        it subtracts numbers of size ``A`` and so loses relative accuracy (it may even
        return a tiny negative number) when ``theta0`` and ``theta1`` are close.  Use the
        dedicated functions (:func:`kl_poisson`, :func:`kl_gamma`, ...) for values.

    Raises
    ------
    ValueError
        Parameters that are not finite, of different shapes or more than 1-D; a non-finite
        ``A`` or mean statistic (theta outside the natural parameter space).

    References
    ----------
    Banerjee et al. (2005), *JMLR* 6, sec. 4; Wainwright & Jordan (2008), ch. 3.

    Examples
    --------
    >>> import numpy as np
    >>> round(kl_exponential_family(np.exp, np.exp, np.log(2.0), np.log(3.0)), 6)
    0.18907
    """
    t0, t1 = as_float_array(theta0, "theta0"), as_float_array(theta1, "theta1")
    if t0.shape != t1.shape or t0.ndim > 1:
        raise ValueError(f"shape mismatch: theta0 has shape {t0.shape}, theta1 has shape {t1.shape} "
                         "(two scalars or two vectors of the same length)")
    a0, a1 = float(log_partition(t0)), float(log_partition(t1))
    grad = np.asarray(mean_statistic(t0), dtype=np.float64)
    if grad.shape != t0.shape:
        raise ValueError(f"mean_statistic returned shape {grad.shape}, expected {t0.shape} (that of theta)")
    if not (math.isfinite(a0) and math.isfinite(a1) and np.all(np.isfinite(grad))):
        raise ValueError("A(theta) or its gradient is not finite: theta is outside the natural parameter space")
    return float(a1 - a0 - np.sum(grad * (t1 - t0)))
