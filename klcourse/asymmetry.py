r"""Forward and reverse KL fits of one Gaussian to a Gaussian mixture (chapter 4).

The target is a one-dimensional Gaussian mixture

.. math::

    p(x) = \sum_k w_k\, \mathcal N(x;\, m_k, s_k^2),

with weights ``w`` summing to 1, means ``m`` and **standard deviations** ``s``.  The
approximation is a single Gaussian :math:`q = \mathcal N(\mu, \sigma^2)`, again given by its
standard deviation ``sigma``.  Relative to the fixed target ``P``:

* the *forward* KL :math:`D(P \| Q) = \int p \log(p/q)\,dx` is minimised in closed form by
  matching the mean and variance of ``P`` (:func:`fit_forward_gaussian`);
* the *reverse* KL :math:`D(Q \| P) = \int q \log(q/p)\,dx` has no closed form; it is
  evaluated by trapezoidal quadrature on a fixed uniform grid and minimised by gradient
  descent in torch from several starts (:func:`fit_reverse_gaussian`).

Quadrature on a uniform grid is very accurate here: the integrands are smooth and decay
like Gaussians, and for such functions the trapezoidal rule converges faster than any
power of the spacing as long as the grid covers the mass and the spacing is well below
the smallest standard deviation involved.

References
----------
Bishop, C. M. (2006). *Pattern Recognition and Machine Learning*, Springer, sec. 10.1.2.
Minka, T. P. (2001). Expectation propagation for approximate Bayesian inference. UAI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from klcourse._optional import require_torch
from klcourse._validate import as_float_array, check_positive, probability_array, scalar_or_array

__all__ = [
    "EXAMPLE_MIXTURE",
    "EXAMPLE_STARTS",
    "ReverseFit",
    "alpha_divergence_gaussian",
    "factorised_gaussian_fit",
    "fit_alpha_gaussian",
    "fit_forward_gaussian",
    "fit_reverse_gaussian",
    "forward_kl_gaussian",
    "forward_kl_hessian",
    "gaussian_logpdf",
    "kl_on_grid",
    "mean_field_updates",
    "mixture_logpdf",
    "mixture_moments",
    "mixture_pdf",
    "quadrature_grid",
    "reverse_kl_gaussian",
    "reverse_kl_hessian",
    "trapezoid_weights",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

#: log-densities below this are treated as density 0 in the quadrature.  exp(-700) ~ 1e-304:
#: what is dropped is below float64 resolution of any integral here, and it keeps ``exp`` away
#: from subnormal numbers, which are ~100x slower on CPUs.
LOG_TINY = -700.0


def _exp_cut(log_values):
    """``exp`` of log-densities, with exactly 0 below :data:`LOG_TINY` (numpy or torch)."""
    keep = log_values > LOG_TINY
    if hasattr(log_values, "clamp"):  # torch
        return log_values.clamp(min=LOG_TINY).exp() * keep
    return np.exp(np.maximum(log_values, LOG_TINY)) * keep


#: The chapter's target P = 0.4 N(-3, 1) + 0.6 N(3, 0.8^2): two separated modes of unequal weight
#: (``sds`` are standard deviations).  Pass as ``**EXAMPLE_MIXTURE``.
EXAMPLE_MIXTURE = {"weights": (0.4, 0.6), "means": (-3.0, 3.0), "sds": (1.0, 0.8)}

#: Starting Gaussians (mu, sigma) for the reverse fits of chapter 4, labelled A-E.
EXAMPLE_STARTS = {"A": (-5.0, 0.5), "B": (-0.5, 0.5), "C": (0.3, 0.5), "D": (0.0, 4.0), "E": (5.0, 2.0)}


# --------------------------------------------------------------------------- the mixture
def _mixture_params(weights, means, sds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate mixture parameters: 1-D, equal lengths, weights a probability vector, sds > 0."""
    w = probability_array(weights, "weights")
    m = as_float_array(means, "means")
    s = as_float_array(sds, "sds")
    if w.ndim != 1 or m.shape != w.shape or s.shape != w.shape:
        raise ValueError(
            f"weights, means and sds must be 1-D of equal length, got shapes {w.shape}, {m.shape}, {s.shape}"
        )
    check_positive(s, "sds")
    return w, m, s


def gaussian_logpdf(x, mu, sigma):
    r"""Log-density of :math:`\mathcal N(\mu, \sigma^2)` at ``x``; ``sigma`` is the standard deviation.

    .. math:: \log q(x) = -\tfrac12\big((x-\mu)/\sigma\big)^2 - \log\sigma - \tfrac12\log 2\pi.

    Works for numpy arrays and for torch tensors (all arguments of one kind); broadcasts.
    """
    z = (x - mu) / sigma
    log_sigma = sigma.log() if hasattr(sigma, "log") else np.log(sigma)  # torch tensor or numpy
    return -0.5 * z * z - log_sigma - _HALF_LOG_2PI


def mixture_logpdf(x, weights, means, sds) -> np.ndarray:
    r"""Log-density of the Gaussian mixture :math:`\sum_k w_k \mathcal N(m_k, s_k^2)` at ``x``.

    Computed as :math:`\operatorname{logsumexp}_k(\log w_k + \log \mathcal N(x; m_k, s_k^2))`, so it
    stays finite far in the tails where the density itself underflows to 0.

    Parameters
    ----------
    x : array_like
        Points (any shape).
    weights : array_like, shape (K,)
        Mixture weights, non-negative, summing to 1.  A zero weight drops the component.
    means : array_like, shape (K,)
    sds : array_like, shape (K,)
        Component **standard deviations** (not variances), > 0.

    Returns
    -------
    float or numpy.ndarray
        ``log p(x)``, same shape as ``x`` (a Python float for scalar ``x``).

    Raises
    ------
    ValueError
        NaN/inf anywhere, weights not summing to 1, negative weights, ``sds <= 0``, unequal lengths.
    """
    w, m, s = _mixture_params(weights, means, sds)
    x = as_float_array(x, "x")
    with np.errstate(divide="ignore"):  # log 0 = -inf for a zero weight is exactly right
        log_w = np.log(w)
    comp = log_w + gaussian_logpdf(x[..., None], m, s)
    return scalar_or_array(logsumexp(comp, axis=-1))


def mixture_pdf(x, weights, means, sds) -> np.ndarray:
    """Density of the Gaussian mixture at ``x`` (see :func:`mixture_logpdf`)."""
    return scalar_or_array(np.exp(mixture_logpdf(x, weights, means, sds)))


def mixture_moments(weights, means, sds) -> tuple[float, float]:
    r"""Mean and **variance** of the mixture.

    .. math::

        \mathbb E_P[X] = \sum_k w_k m_k, \qquad
        \operatorname{Var}_P[X] = \sum_k w_k s_k^2 + \sum_k w_k (m_k - \mathbb E_P[X])^2,

    the law of total variance: the average within-component variance plus the spread of
    the component means.
    """
    w, m, s = _mixture_params(weights, means, sds)
    mean = float(np.dot(w, m))
    variance = float(np.dot(w, s**2) + np.dot(w, (m - mean) ** 2))
    return mean, variance


def fit_forward_gaussian(weights, means, sds) -> tuple[float, float]:
    r"""The Gaussian :math:`\mathcal N(\mu^*, \sigma^{*2})` minimising the forward KL :math:`D(P \| Q)`.

    For any ``P`` with finite variance,

    .. math::

        D(P \| \mathcal N(\mu, \sigma^2)) = -H(P) + \tfrac12 \log(2\pi\sigma^2)
            + \frac{\operatorname{Var}_P[X] + (\mathbb E_P[X] - \mu)^2}{2\sigma^2},

    which is minimised by :math:`\mu^* = \mathbb E_P[X]` and :math:`\sigma^{*2} = \operatorname{Var}_P[X]`
    (moment matching; see chapter 4 for the proof).

    Parameters
    ----------
    weights, means, sds : array_like, shape (K,)
        The mixture ``P``; ``sds`` are standard deviations.

    Returns
    -------
    (mu, sigma) : tuple of float
        Mean and **standard deviation** of the best Gaussian.

    References
    ----------
    Bishop (2006), sec. 10.7 (moment matching); Minka (2001).
    """
    mean, variance = mixture_moments(weights, means, sds)
    return mean, math.sqrt(variance)


# --------------------------------------------------------------------------- quadrature
def quadrature_grid(weights, means, sds, *, cover=(), width: float = 10.0, per_sd: float = 10.0,
                    max_points: int = 100_001) -> np.ndarray:
    r"""A uniform grid for integrals involving the mixture and the Gaussians ``cover``.

    It spans every mixture component and every ``(mu, sigma)`` in ``cover`` to ``width``
    standard deviations on each side (Gaussian tails beyond 10 sd are below ``1e-22`` of the
    peak), with spacing ``min(all standard deviations) / per_sd``.  For Gaussian-like smooth
    integrands the trapezoidal rule on such a grid has an error of order
    :math:`e^{-2\pi^2 \mathrm{per\_sd}^2}`: ``per_sd = 10`` is far beyond float64 resolution.

    Parameters
    ----------
    weights, means, sds : array_like, shape (K,)
        The mixture (``sds`` standard deviations).
    cover : sequence of (mu, sigma), optional
        Further Gaussians the grid must resolve (e.g. the approximations ``Q``).
    width, per_sd : float
    max_points : int
        Refuse to build bigger grids (a tiny sigma far away would need millions of points).

    Returns
    -------
    numpy.ndarray
        Increasing grid points.
    """
    _, m, s = _mixture_params(weights, means, sds)
    cover = as_float_array(cover, "cover").reshape(-1, 2)
    check_positive(cover[:, 1], "sigma in cover")
    centres, scales = np.concatenate([m, cover[:, 0]]), np.concatenate([s, cover[:, 1]])
    lo, hi = float(np.min(centres - width * scales)), float(np.max(centres + width * scales))
    n = int(math.ceil((hi - lo) * per_sd / float(np.min(scales)))) + 1
    if n > max_points:
        raise ValueError(f"the quadrature grid would need {n} points (> max_points={max_points}); "
                         "the Gaussians are too narrow for the range they span")
    return np.linspace(lo, hi, max(n, 3))


def trapezoid_weights(x) -> np.ndarray:
    """Trapezoidal-rule weights for the (sorted, not necessarily uniform) grid ``x``."""
    x = as_float_array(x, "x")
    if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("x must be a strictly increasing 1-D grid with at least 2 points")
    dx = np.diff(x)
    w = np.zeros_like(x)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w


def kl_on_grid(log_p, log_q, x) -> float:
    r""":math:`\int p \log(p/q)\,dx` by the trapezoidal rule from log-densities on the grid ``x``.

    Points with :math:`p = 0` (``log_p == -inf``) contribute 0; a point with :math:`p > 0` and
    :math:`q = 0` makes the result ``inf`` (no epsilon clipping).  Swap the arguments for the
    other direction.

    References
    ----------
    Cover & Thomas (2006), *Elements of Information Theory*, 2nd ed., sec. 8.5 (relative entropy of densities).
    """
    log_p, log_q = _log_density_array(log_p, "log_p"), _log_density_array(log_q, "log_q")
    w = trapezoid_weights(x)
    if log_p.shape != w.shape or log_q.shape != w.shape:
        raise ValueError(f"log_p, log_q and x must have the same shape, got {log_p.shape}, {log_q.shape}, "
                         f"{w.shape}")
    support = np.isfinite(log_p)
    if np.any(support & ~np.isfinite(log_q)):
        return math.inf
    p = np.exp(log_p[support])
    return float(np.sum(w[support] * p * (log_p[support] - log_q[support])))


def _log_density_array(x, name: str) -> np.ndarray:
    """Like :func:`~klcourse._validate.as_float_array` but accepting ``-inf`` (log of 0)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from exc
    if np.isnan(arr).any() or np.any(arr == np.inf):
        raise ValueError(f"{name} contains NaN or +inf; log-densities must be finite or -inf")
    return arr


def _gaussian_params(mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.broadcast_arrays(as_float_array(mu, "mu"), as_float_array(sigma, "sigma"))
    check_positive(sigma, "sigma")
    return mu, sigma


def _over_params(mu, sigma, weights, means, sds, grid, integrand) -> float | np.ndarray:
    """Evaluate ``sum_i w_i * integrand(log_q_i, log_p_i)`` for every (mu, sigma), in chunks."""
    mu, sigma = _gaussian_params(mu, sigma)
    if grid is None:
        grid = quadrature_grid(weights, means, sds, cover=np.stack([mu.ravel(), sigma.ravel()], axis=-1))
    x = as_float_array(grid, "grid")
    w, log_p = trapezoid_weights(x), mixture_logpdf(x, weights, means, sds)
    flat_mu, flat_sigma = mu.ravel(), sigma.ravel()
    out = np.empty(flat_mu.shape)
    for start in range(0, flat_mu.size, 256):
        sl = slice(start, start + 256)
        log_q = gaussian_logpdf(x, flat_mu[sl, None], flat_sigma[sl, None])
        out[sl] = integrand(log_q, log_p) @ w
    out = out.reshape(mu.shape)
    return float(out) if out.ndim == 0 else out


def reverse_kl_gaussian(mu, sigma, weights, means, sds, *, grid=None):
    r"""Reverse KL :math:`D(\mathcal N(\mu, \sigma^2) \| P)`, the divergence of ``P`` from ``Q``, by quadrature.

    .. math:: D(Q \| P) = \int q(x)\,\big(\log q(x) - \log p(x)\big)\,dx,

    with the trapezoidal rule on ``grid`` (default: :func:`quadrature_grid` covering ``P`` and
    every ``Q``).  Vectorised: ``mu`` and ``sigma`` (standard deviation) broadcast, giving one
    value per pair — handy for drawing the loss landscape.  A grid of your own must cover where
    ``Q`` and ``P`` have mass and be finer than the smallest standard deviation.

    Returns
    -------
    float or numpy.ndarray
        ``D(Q || P)`` in nats.

    References
    ----------
    Bishop (2006), *Pattern Recognition and Machine Learning*, sec. 10.1.2 (forward vs reverse KL).
    """
    return _over_params(mu, sigma, weights, means, sds, grid, lambda lq, lp: _exp_cut(lq) * (lq - lp))


def forward_kl_gaussian(mu, sigma, weights, means, sds, *, grid=None):
    r"""Forward KL :math:`D(P \| \mathcal N(\mu, \sigma^2))`, the divergence of ``Q`` from ``P``, by quadrature.

    .. math:: D(P \| Q) = \int p(x)\,\big(\log p(x) - \log q(x)\big)\,dx,

    trapezoidal rule on ``grid`` (default :func:`quadrature_grid`); ``mu`` and ``sigma`` (standard
    deviation) broadcast.  Used to check numerically that moment matching is the minimum.

    References
    ----------
    Bishop (2006), *Pattern Recognition and Machine Learning*, sec. 10.1.2.
    """
    return _over_params(mu, sigma, weights, means, sds, grid, lambda lq, lp: _exp_cut(lp) * (lp - lq))


def forward_kl_hessian(mu, sigma, weights, means, sds) -> np.ndarray:
    r"""Hessian of the forward KL :math:`D(P \| \mathcal N(\mu, \sigma^2))` in :math:`(\mu, \log\sigma)`.

    From the closed form of chapter 4, with :math:`t = \log\sigma`, :math:`d = \mu - m` and
    :math:`m, v` the mean and variance of ``P``,

    .. math::

        D = \text{const} + t + \tfrac12 (v + d^2) e^{-2t}, \qquad
        \nabla^2 D = e^{-2t} \begin{pmatrix} 1 & -2d \\ -2d & 2(v + d^2) \end{pmatrix},

    whose determinant :math:`2e^{-4t}(v - d^2)` is negative wherever :math:`|\mu - m| > \sqrt v`:
    the forward KL has a single stationary point (the moment-matching minimum) but is **not
    convex** in :math:`(\mu, \log\sigma)`.  (Nor in :math:`(\mu, \sigma)`.  It is convex in the
    natural parameters :math:`(\mu/\sigma^2, -1/(2\sigma^2))`, as for every exponential family.)

    Parameters
    ----------
    mu, sigma : array_like
        Broadcast together; ``sigma`` is a standard deviation, > 0.
    weights, means, sds : array_like, shape (K,)
        The mixture ``P`` (only its mean and variance enter).

    Returns
    -------
    numpy.ndarray, shape ``broadcast(mu, sigma).shape + (2, 2)``
    """
    mean, variance = mixture_moments(weights, means, sds)
    mu, sigma = _gaussian_params(mu, sigma)
    d, scale = mu - mean, sigma**-2.0
    hess = np.empty(mu.shape + (2, 2))
    hess[..., 0, 0] = scale
    hess[..., 0, 1] = hess[..., 1, 0] = -2 * d * scale
    hess[..., 1, 1] = 2 * (variance + d * d) * scale
    return hess


def reverse_kl_hessian(mu, sigma, weights, means, sds, *, grid=None) -> np.ndarray:
    r"""Hessian of the reverse KL :math:`D(\mathcal N(\mu, \sigma^2) \| P)` in :math:`(\mu, \log\sigma)`.

    Exact second derivatives (torch autograd, float64) of the grid quadrature that
    :func:`reverse_kl_gaussian` and :func:`fit_reverse_gaussian` use.  At a point the descent
    stopped at, two positive eigenvalues make it a genuine local minimum; a small eigenvalue marks
    a flat direction.

    Parameters
    ----------
    mu, sigma : float
        One Gaussian ``Q`` (``sigma`` a standard deviation).
    weights, means, sds : array_like, shape (K,)
        The mixture ``P``.
    grid : array_like, optional
        Default :func:`quadrature_grid` covering ``P`` and ``Q``.

    Returns
    -------
    numpy.ndarray, shape (2, 2)
    """
    torch = require_torch("klcourse.asymmetry.reverse_kl_hessian")

    mu_arr, sigma_arr = _gaussian_params(mu, sigma)
    if mu_arr.ndim != 0:
        raise ValueError("reverse_kl_hessian takes one (mu, sigma) pair")
    if grid is None:
        grid = quadrature_grid(weights, means, sds, cover=[(float(mu_arr), float(sigma_arr))])
    x_np = as_float_array(grid, "grid")
    x, w = torch.from_numpy(x_np), torch.from_numpy(trapezoid_weights(x_np))
    log_p = torch.from_numpy(mixture_logpdf(x_np, weights, means, sds))

    def objective(theta):
        return _reverse_kl_torch(theta[:1], theta[1:], x, log_p, w)[0]

    theta = torch.tensor([float(mu_arr), math.log(float(sigma_arr))], dtype=torch.float64)
    return torch.autograd.functional.hessian(objective, theta).numpy()


# --------------------------------------------------------------------------- reverse-KL fits
@dataclass(frozen=True)
class ReverseFit:
    """The result of one reverse-KL gradient descent run.

    Attributes
    ----------
    start : tuple of float
        ``(mu, sigma)`` where the run started.
    mu, sigma : float
        The optimum found (``sigma`` a standard deviation).
    kl : float
        ``D(Q || P)`` at the optimum, nats (grid quadrature).
    path : numpy.ndarray, shape (steps + 1, 2)
        ``(mu, sigma)`` after each step, starting with the start.
    kl_path : numpy.ndarray, shape (steps + 1,)
        ``D(Q || P)`` along the path.
    grad_norm : float
        Norm of the gradient with respect to ``(mu, log sigma)`` at the optimum.
    """

    start: tuple[float, float]
    mu: float
    sigma: float
    kl: float
    path: np.ndarray
    kl_path: np.ndarray
    grad_norm: float


def _reverse_kl_torch(mu, log_sigma, x, log_p, w):
    """D(N(mu, exp(log_sigma)^2) || P) for a batch of (mu, log_sigma), trapezoid weights ``w``."""
    log_q = gaussian_logpdf(x, mu[:, None], log_sigma.exp()[:, None])
    return (_exp_cut(log_q) * (log_q - log_p)) @ w


def fit_reverse_gaussian(weights, means, sds, starts, *, steps: int = 500, lr: float = 0.05,
                         grid=None) -> list[ReverseFit]:
    r"""Minimise the reverse KL :math:`D(\mathcal N(\mu, \sigma^2) \| P)` by Adam from several starts.

    The objective is the quadrature of :func:`reverse_kl_gaussian`, written in torch (float64)
    and differentiated by autograd with respect to :math:`(\mu, \log\sigma)`; the log keeps
    :math:`\sigma > 0`.  All starts run together as one batch: Adam acts coordinate-wise and
    the objective is a sum of independent terms, so this is exactly equivalent to separate
    runs.  The learning rate decays linearly to 0 over the run, which lets Adam settle
    instead of hovering around the optimum.  Deterministic (no sampling).

    Parameters
    ----------
    weights, means, sds : array_like, shape (K,)
        The target mixture ``P`` (``sds`` standard deviations).
    starts : sequence of (mu, sigma)
        Initial Gaussians, ``sigma > 0``.
    steps : int, default 500
    lr : float, default 0.05
        Initial Adam learning rate.
    grid : array_like, optional
        Quadrature grid; default :func:`quadrature_grid` covering the target and every start.

    Returns
    -------
    list of ReverseFit
        One per start, in order: optimum, its ``D(Q || P)`` and the whole trajectory.

    Notes
    -----
    Reverse KL to a multimodal target is not convex in :math:`(\mu, \sigma)`: different starts
    can end in different local minima.  With well-separated modes most of them sit on one mode,
    but not all: for :data:`EXAMPLE_MIXTURE` start ``D`` ends in a wide minimum spanning both
    modes (:func:`reverse_kl_hessian` confirms it is one).  Compare their ``kl``.

    References
    ----------
    Kingma, D. P. & Ba, J. (2015). Adam: a method for stochastic optimization. ICLR.
    Bishop (2006), sec. 10.1.2 (mode-seeking reverse-KL fits).
    """
    torch = require_torch("klcourse.asymmetry.fit_reverse_gaussian")

    starts = as_float_array(starts, "starts")
    if starts.ndim != 2 or starts.shape[1] != 2:
        raise ValueError(f"starts must be a sequence of (mu, sigma) pairs, got shape {starts.shape}")
    check_positive(starts[:, 1], "starting sigma")
    if steps < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation (100x slower on 2 busy cores)
    try:
        return _adam_fits(torch, weights, means, sds, starts, steps, lr, grid)
    finally:
        torch.set_num_threads(threads)


def _adam_fits(torch, weights, means, sds, starts, steps, lr, grid) -> list[ReverseFit]:
    if grid is None:
        grid = quadrature_grid(weights, means, sds, cover=starts)
    x_np = as_float_array(grid, "grid")
    x, w = torch.from_numpy(x_np), torch.from_numpy(trapezoid_weights(x_np))
    log_p = torch.from_numpy(mixture_logpdf(x_np, weights, means, sds))
    theta = torch.from_numpy(np.stack([starts[:, 0], np.log(starts[:, 1])], axis=-1))  # (mu, log sigma)
    adam = _Adam(theta, lr)
    path, kl_path = [], []
    for t in range(steps + 1):
        theta.requires_grad_(True)
        kl = _reverse_kl_torch(theta[:, 0], theta[:, 1], x, log_p, w)
        (grad,) = torch.autograd.grad(kl.sum(), theta)
        theta = theta.detach()
        path.append(np.stack([theta[:, 0].numpy(), np.exp(theta[:, 1].numpy())], axis=-1))
        kl_path.append(kl.detach().numpy())
        if t < steps:
            theta = adam.step(theta, grad, scale=1.0 - t / steps)  # learning rate decays linearly to 0
    grad_norm = grad.norm(dim=1).numpy()
    path, kl_path = np.stack(path, axis=1), np.stack(kl_path, axis=1)
    return [
        ReverseFit((float(s[0]), float(s[1])), float(p[-1, 0]), float(p[-1, 1]), float(k[-1]), p, k, float(g))
        for s, p, k, g in zip(starts, path, kl_path, grad_norm, strict=True)
    ]


class _Adam:
    r"""Adam (Kingma & Ba, 2015), the update of ``torch.optim.Adam`` with its default betas and eps.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}.

    Written out because ``torch.optim`` imports the torch compiler on first use, which costs
    seconds; ``tests/test_asymmetry.py`` checks it step for step against ``torch.optim.Adam``.
    """

    def __init__(self, theta, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m, self.v, self.t = theta * 0, theta * 0, 0

    def step(self, theta, grad, *, scale: float = 1.0):
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return theta - scale * self.lr * m_hat / (v_hat.sqrt() + self.eps)


# --------------------------------------------------------------------------- factorised fits of a 2-D Gaussian
def _mvn_params(mean, cov) -> tuple[np.ndarray, np.ndarray]:
    """Validate a mean vector and a symmetric positive definite covariance of matching size."""
    mean, cov = as_float_array(mean, "mean"), as_float_array(cov, "cov")
    if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
        raise ValueError(f"mean must be a vector and cov a square matrix of its size, got shapes {mean.shape} "
                         f"and {cov.shape}")
    if not np.allclose(cov, cov.T, rtol=1e-12, atol=0.0):
        raise ValueError("cov must be symmetric")
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        raise ValueError("cov must be positive definite") from exc
    return mean, cov


def factorised_gaussian_fit(mean, cov, direction: str) -> tuple[np.ndarray, np.ndarray]:
    r"""The factorised Gaussian :math:`Q = \prod_i \mathcal N(m_i, s_i^2)` closest to :math:`\mathcal N(\mu, \Sigma)`.

    Both directions have closed forms (Bishop 2006, sec. 10.1.2), with :math:`\Lambda = \Sigma^{-1}`:

    * ``"reverse"``, minimising :math:`D(Q \| P)` (mean-field variational inference): :math:`m = \mu` and
      :math:`s_i^2 = 1/\Lambda_{ii}`, the *conditional* variance of :math:`z_i` given the other coordinates;
    * ``"forward"``, minimising :math:`D(P \| Q)`: :math:`m = \mu` and :math:`s_i^2 = \Sigma_{ii}`, the
      *marginal* variances (the product of the marginals of ``P``).

    Since :math:`1/\Lambda_{ii} \le \Sigma_{ii}`, with equality only without correlation, the reverse fit
    is never wider than the forward one; in two dimensions the ratio is :math:`1 - \rho^2`.

    Parameters
    ----------
    mean : array_like, shape (d,)
    cov : array_like, shape (d, d)
        Symmetric positive definite covariance of ``P``.
    direction : {"reverse", "forward"}

    Returns
    -------
    (means, sds) : tuple of numpy.ndarray, shape (d,)
        Means and **standard deviations** of the factors.

    References
    ----------
    Bishop, C. M. (2006). *Pattern Recognition and Machine Learning*, sec. 10.1.2, eqs. (10.12)-(10.15).
    """
    mean, cov = _mvn_params(mean, cov)
    if direction == "reverse":
        variances = 1.0 / np.diag(np.linalg.inv(cov))
    elif direction == "forward":
        variances = np.diag(cov).copy()
    else:
        raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}")
    return mean.copy(), np.sqrt(variances)


def mean_field_updates(mean, cov, start, *, sweeps: int = 10) -> np.ndarray:
    r"""Coordinate-ascent (CAVI) path of the factor means for the reverse-KL fit of :func:`factorised_gaussian_fit`.

    Each step updates one factor with the others fixed, Bishop's eq. (10.13) in ``d`` dimensions:

    .. math:: m_i \leftarrow \mu_i - \Lambda_{ii}^{-1} \sum_{j \ne i} \Lambda_{ij} (m_j - \mu_j).

    The factor variances are :math:`1/\Lambda_{ii}` from the first update on, whatever the means are.

    Parameters
    ----------
    mean, cov : array_like
        The target ``N(mean, cov)``.
    start : array_like, shape (d,)
        Initial factor means.
    sweeps : int, default 10
        Each sweep updates every coordinate once, in order.

    Returns
    -------
    numpy.ndarray, shape (sweeps * d + 1, d)
        The means after every single-coordinate update, starting with ``start``.
    """
    mean, cov = _mvn_params(mean, cov)
    m = as_float_array(start, "start").copy()
    if m.shape != mean.shape:
        raise ValueError(f"start must have shape {mean.shape}, got {m.shape}")
    if sweeps < 1:
        raise ValueError(f"sweeps must be >= 1, got {sweeps}")
    precision = np.linalg.inv(cov)
    path = [m.copy()]
    for _ in range(sweeps):
        for i in range(mean.size):
            others = np.arange(mean.size) != i
            m[i] = mean[i] - precision[i, others] @ (m[others] - mean[others]) / precision[i, i]
            path.append(m.copy())
    return np.array(path)


# --------------------------------------------------------------------------- alpha-divergence fits (Minka 2005)
def alpha_divergence_gaussian(mu, sigma, weights, means, sds, alpha: float, *, grid=None) -> float:
    r"""Minka's α-divergence :math:`D_\alpha(P \| Q)` of ``Q = N(mu, sigma^2)`` from the mixture ``P``, by quadrature.

    .. math::

        D_\alpha(P \| Q) = \frac{1 - \int p^\alpha q^{1-\alpha}\,dx}{\alpha (1 - \alpha)},

    the convention of chapter 2 (:func:`klcourse.divergences.renyi_divergence` is its Rényi relative).
    Its limits are the forward KL :math:`D(P \| Q)` at :math:`\alpha = 1` and the reverse KL
    :math:`D(Q \| P)` at :math:`\alpha = 0`; both endpoints are returned exactly by those integrals.
    ``alpha = 0.5`` gives four times the squared Hellinger distance.

    Parameters
    ----------
    mu, sigma : float
        ``Q`` (``sigma`` a standard deviation).
    weights, means, sds : array_like, shape (K,)
        The mixture ``P``.
    alpha : float
        Any real order.
    grid : array_like, optional
        Trapezoidal grid; default :func:`quadrature_grid` covering ``P`` and ``Q``.

    Returns
    -------
    float
        Nats; ``>= 0``.

    References
    ----------
    Minka, T. (2005). Divergence measures and message passing. Microsoft Research MSR-TR-2005-173.
    """
    value, _ = _alpha_objective(np.array([mu, math.log(float(sigma))]), weights, means, sds,
                                _alpha_value(alpha), grid, (float(mu), float(sigma)))
    return value


def _alpha_value(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise ValueError(f"alpha must be a real number, got {alpha!r}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    return float(alpha)


def _alpha_objective(theta, weights, means, sds, alpha, grid, cover):
    """D_alpha(P || N(mu, e^{2t})) and its gradient in theta = (mu, t = log sigma), by the trapezoidal rule."""
    mu, log_sigma = float(theta[0]), float(theta[1])
    sigma = math.exp(log_sigma)
    check_positive(np.array([sigma]), "sigma")
    if grid is None:
        grid = quadrature_grid(weights, means, sds, cover=[cover])
    x = as_float_array(grid, "grid")
    w, log_p = trapezoid_weights(x), mixture_logpdf(x, weights, means, sds)
    log_q = gaussian_logpdf(x, mu, sigma)
    z = (x - mu) / sigma
    score = np.stack([z / sigma, z * z - 1.0])  # d log q / d(mu, log sigma)
    if alpha == 0.0:  # reverse KL: d/dθ ∫ q (log q - log p) = ∫ q (log q - log p) dlog q/dθ
        f = _exp_cut(log_q) * (log_q - log_p)
        return float(f @ w), score @ (f * w)
    if alpha == 1.0:  # forward KL: d/dθ = -∫ p dlog q/dθ
        p = _exp_cut(log_p)
        return float((p * (log_p - log_q)) @ w), -(score @ (p * w))
    g = _exp_cut(alpha * log_p + (1.0 - alpha) * log_q)  # p^alpha q^(1 - alpha)
    scale = alpha * (1.0 - alpha)
    return float((1.0 - g @ w) / scale), -(1.0 - alpha) * (score @ (g * w)) / scale


def fit_alpha_gaussian(weights, means, sds, alpha: float, starts, *, grid=None) -> list[tuple[float, float, float]]:
    r"""Minimise :math:`D_\alpha(P \| \mathcal N(\mu, \sigma^2))` over Gaussians, from several starts.

    L-BFGS (scipy) on :math:`(\mu, \log\sigma)` with the exact gradient of the quadrature of
    :func:`alpha_divergence_gaussian`: for :math:`\alpha \notin \{0, 1\}`,
    :math:`\nabla_\theta D_\alpha = -\frac{1}{\alpha}\int p^\alpha q^{1-\alpha}\,\nabla_\theta \log q\,dx`.
    ``alpha = 1`` gives moment matching (:func:`fit_forward_gaussian`), ``alpha = 0`` the reverse fit of
    :func:`fit_reverse_gaussian`; in between the fit moves from one to the other. Deterministic.

    Parameters
    ----------
    weights, means, sds : array_like, shape (K,)
        The target mixture ``P``.
    alpha : float
        In ``[0, 1]``.
    starts : sequence of (mu, sigma)
    grid : array_like, optional
        Default: :func:`quadrature_grid` covering ``P``, every start and a Gaussian 1.5 times as wide as
        the forward fit, so that it also resolves the fits in between.

    Returns
    -------
    list of (mu, sigma, value)
        One local minimum per start, ``sigma`` a standard deviation, ``value`` in nats.

    References
    ----------
    Minka, T. (2005). Divergence measures and message passing. MSR-TR-2005-173.
    """
    from scipy.optimize import minimize

    alpha = _alpha_value(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"fit_alpha_gaussian needs 0 <= alpha <= 1, got {alpha}: outside, D_alpha of a narrow "
                         "Gaussian from a mixture can be infinite")
    starts = as_float_array(starts, "starts")
    if starts.ndim != 2 or starts.shape[1] != 2:
        raise ValueError(f"starts must be a sequence of (mu, sigma) pairs, got shape {starts.shape}")
    check_positive(starts[:, 1], "starting sigma")
    if grid is None:
        mu_f, sigma_f = fit_forward_gaussian(weights, means, sds)
        grid = quadrature_grid(weights, means, sds, cover=[*starts.tolist(), (mu_f, 1.5 * sigma_f)])
    grid = as_float_array(grid, "grid")
    fits = []
    for mu0, sigma0 in starts:
        res = minimize(_alpha_objective, np.array([mu0, math.log(sigma0)]), jac=True, method="L-BFGS-B",
                       args=(weights, means, sds, alpha, grid, None), options={"gtol": 1e-10, "ftol": 1e-14})
        fits.append((float(res.x[0]), math.exp(float(res.x[1])), float(res.fun)))
    return fits
