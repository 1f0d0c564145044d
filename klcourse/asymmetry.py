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
    "fit_forward_gaussian",
    "fit_reverse_gaussian",
    "forward_kl_gaussian",
    "forward_kl_hessian",
    "gaussian_logpdf",
    "kl_on_grid",
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
