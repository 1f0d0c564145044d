r"""EM for Gaussian mixtures, written so that every step of the ELBO bookkeeping is visible (chapter 7).

The model has K components with weights :math:`\pi_k`, means :math:`\mu_k` and full covariances
:math:`\Sigma_k`; the latent :math:`z_n \in \{1, \dots, K\}` says which component drew :math:`x_n`.
For any distribution :math:`q(z)` over the assignments (one row of responsibilities per point),

.. math::

    \log p(x \mid \theta) = \mathcal L(q, \theta) + D_{\mathrm{KL}}\big(q \,\|\, p(z \mid x, \theta)\big),
    \qquad
    \mathcal L(q, \theta) = \mathbb E_q[\log p(x, z \mid \theta)] + H(q),

with the KL divergence of the posterior from ``q`` (expectation under ``q``). The E-step sets
``q`` to the posterior and so closes the gap; the M-step maximises :math:`\mathcal L(q, \theta)` over
:math:`\theta` with ``q`` fixed. Everything is in nats and summed over the data points (not averaged).

Numerics: log densities via Cholesky factors, normalisation with ``logsumexp``, and a small ridge
``reg_covar`` added to each covariance in the M-step (as in scikit-learn's ``GaussianMixture``).

Beyond exact EM: :func:`fit_gmm_variant` (a hard E-step, a one-block M-step), MAP-EM with a conjugate
prior (:class:`GMMPrior`, :func:`m_step_map`, :func:`fit_gmm_map_em`), and the M-step objective
:func:`expected_complete_log_likelihood` for the proximal identity.

References: Dempster, Laird & Rubin (1977); Bishop (2006), sections 9.2-9.4; Fraley & Raftery (2007),
Bayesian regularization for normal mixture estimation, J. Classification 24, 155-181; Chretien & Hero
(2000), Kullback proximal algorithms for maximum-likelihood estimation, IEEE Trans. Inf. Theory 46, 1800-1810.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln, logsumexp, multigammaln, xlogy

from klcourse._validate import as_float_array

#: default ridge added to every covariance in the M-step (same default as scikit-learn)
REG_COVAR = 1e-6

#: keys an ``init`` dictionary may contain
INIT_KEYS = ("weights", "means", "covs")


class GMMParams(NamedTuple):
    """Parameters of a K-component Gaussian mixture in d dimensions.

    Attributes
    ----------
    weights : ndarray, shape (K,)
        Mixing weights :math:`\\pi_k`, non-negative, summing to 1.
    means : ndarray, shape (K, d)
    covs : ndarray, shape (K, d, d)
        Full covariance matrices (symmetric positive definite).
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray


@dataclass(frozen=True)
class EMResult:
    """What :func:`fit_gmm_em` returns: the fitted mixture and the history of the bound.

    Indexing: :math:`\\theta_0` are the initial parameters and :math:`\\theta_t` those after the M-step
    of iteration ``t`` (``t = 1 … n_iter``); :math:`q_t` are the responsibilities computed in the E-step
    of iteration ``t`` (from :math:`\\theta_{t-1}`), and :math:`q_0` is uniform (every point shared
    equally between the components). All values are in nats, summed over the data points.

    Attributes
    ----------
    weights, means, covs : ndarray
        The final parameters :math:`\\theta_T`, shapes (K,), (K, d), (K, d, d).
    responsibilities : ndarray, shape (n, K)
        The posterior :math:`p(z_n = k \\mid x_n, \\theta_T)` under the final parameters.
    log_likelihood : ndarray, shape (n_iter + 1,)
        :math:`\\log p(x \\mid \\theta_t)` for ``t = 0 … n_iter`` (entry 0 is the initial model).
    elbo_before_e : ndarray, shape (n_iter,)
        :math:`\\mathcal L(q_{t-1}, \\theta_{t-1})`, the bound entering iteration ``t``.
    elbo_after_e : ndarray, shape (n_iter,)
        :math:`\\mathcal L(q_t, \\theta_{t-1})`; equals ``log_likelihood[t-1]`` up to round-off.
    elbo_after_m : ndarray, shape (n_iter,)
        :math:`\\mathcal L(q_t, \\theta_t)`, never below ``elbo_after_e`` (with ``reg_covar=0``); see
        :attr:`bound_trace` for the whole sequence of E- and M-steps.
    kl_gap : ndarray, shape (n_iter,)
        :math:`\\log p(x\\mid\\theta_{t-1}) - \\mathcal L(q_{t-1}, \\theta_{t-1})
        = D_{\\mathrm{KL}}(q_{t-1} \\| p(z \\mid x, \\theta_{t-1})) \\ge 0`, the gap *before* the E-step
        of iteration ``t`` (the one that step closes).
    kl_gap_after_e : ndarray, shape (n_iter,)
        The same gap right after the E-step: zero up to round-off.
    n_iter : int
        Number of EM iterations performed.
    converged : bool
        Whether the change of the mean per-point log-likelihood fell below ``tol``.
    reg_covar : float
        The ridge that was added to each covariance in every M-step.
    initial : GMMParams
        :math:`\\theta_0`, e.g. to start another implementation from the same point.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    responsibilities: np.ndarray
    log_likelihood: np.ndarray
    elbo_before_e: np.ndarray
    elbo_after_e: np.ndarray
    elbo_after_m: np.ndarray
    kl_gap: np.ndarray
    kl_gap_after_e: np.ndarray
    n_iter: int
    converged: bool
    reg_covar: float
    initial: GMMParams

    @property
    def params(self) -> GMMParams:
        """The final parameters as a :class:`GMMParams`."""
        return GMMParams(self.weights, self.means, self.covs)

    @property
    def final_log_likelihood(self) -> float:
        """:math:`\\log p(x \\mid \\theta_T)` in nats (summed over the points)."""
        return float(self.log_likelihood[-1])

    @property
    def bound_trace(self) -> np.ndarray:
        """The bound after every half-step, shape (2 * n_iter + 1,).

        :math:`\\mathcal L(q_0, \\theta_0), \\mathcal L(q_1, \\theta_0), \\mathcal L(q_1, \\theta_1),
        \\mathcal L(q_2, \\theta_1), \\dots`: the start, then after each E-step and each M-step.  EM is
        coordinate ascent on :math:`\\mathcal L(q, \\theta)` (Neal & Hinton 1998): the E-step maximises it
        over ``q``, the exact M-step over :math:`\\theta`, so this sequence never decreases -- at *either*
        kind of step.  (The ridge ``reg_covar`` makes the M-step slightly inexact; ``np.diff`` of this
        trace shows whether that ever costs anything.)
        """
        steps = np.column_stack([self.elbo_after_e, self.elbo_after_m]).ravel()
        return np.concatenate([self.elbo_before_e[:1], steps])


# --------------------------------------------------------------------------- validation
def _as_data(x) -> np.ndarray:
    """Data as a float array of shape (n, d); a 1-D array is n points in one dimension."""
    arr = as_float_array(x, "x")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"x must have shape (n, d) or (n,), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"x is empty (shape {arr.shape})")
    return arr


def _cholesky(covs: np.ndarray, name: str = "covs") -> np.ndarray:
    """Lower Cholesky factors of a stack of covariances; ValueError if one is not SPD."""
    if not np.allclose(covs, np.swapaxes(covs, -1, -2), rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    try:
        return np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{name} is not positive definite (a component collapsed onto too few points?); "
            "increase reg_covar or use fewer components"
        ) from None


def _check_params(weights, means, covs, d: int | None = None) -> GMMParams:
    weights = as_float_array(weights, "weights")
    means = as_float_array(means, "means")
    covs = as_float_array(covs, "covs")
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {weights.shape}")
    k = weights.size
    if d is None:
        d = means.shape[-1] if means.ndim == 2 else 1
    if means.ndim == 1 and d == 1:
        means = means[:, None]
    if covs.ndim == 1 and d == 1:
        covs = covs[:, None, None]
    if means.shape != (k, d):
        raise ValueError(f"means must have shape {(k, d)} (K components, d dimensions), got {means.shape}")
    if covs.shape != (k, d, d):
        raise ValueError(f"covs must have shape {(k, d, d)}, got {covs.shape}")
    if np.min(weights) < 0:
        raise ValueError("weights has negative entries; mixing weights must be >= 0")
    if abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1, they sum to {weights.sum():.6g}")
    _cholesky(covs)
    return GMMParams(weights, means, covs)


def _check_resp(resp, n: int) -> np.ndarray:
    resp = as_float_array(resp, "resp")
    if resp.ndim != 2 or resp.shape[0] != n or resp.shape[1] == 0:
        raise ValueError(f"resp must have shape (n, K) with n = {n} data points, got {resp.shape}")
    if np.min(resp) < 0:
        raise ValueError("resp has negative entries; responsibilities are probabilities")
    if np.max(np.abs(resp.sum(axis=1) - 1.0)) > 1e-6:
        raise ValueError("every row of resp must sum to 1 (a distribution over the components)")
    return resp


def _check_count(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_nonneg_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- the pieces of EM
def log_joint(x, weights, means, covs) -> np.ndarray:
    r"""Log joint :math:`\log p(x_n, z_n = k \mid \theta) = \log \pi_k + \log \mathcal N(x_n \mid \mu_k, \Sigma_k)`.

    With the Cholesky factor :math:`\Sigma_k = L_k L_k^\top` and :math:`y = L_k^{-1}(x_n - \mu_k)`,

    .. math::

        \log \mathcal N(x_n \mid \mu_k, \Sigma_k)
        = -\tfrac d2 \log(2\pi) - \sum_i \log (L_k)_{ii} - \tfrac12 \lVert y \rVert^2 .

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
        Data points (a 1-D array is n points in one dimension).
    weights : array_like, shape (K,)
        Mixing weights (non-negative, summing to 1). A zero weight gives ``-inf`` for that column.
    means : array_like, shape (K, d)
    covs : array_like, shape (K, d, d)
        Symmetric positive definite covariances (``ValueError`` otherwise).

    Returns
    -------
    ndarray, shape (n, K)
        In nats.
    """
    x = _as_data(x)
    params = _check_params(weights, means, covs, x.shape[1])
    return _log_joint(x, params)


def _log_joint(x: np.ndarray, params: GMMParams) -> np.ndarray:
    d = x.shape[1]
    chol = _cholesky(params.covs)
    inv_chol = np.linalg.inv(chol)  # (K, d, d), lower triangular: y = L^{-1} (x - mu)
    y = np.einsum("kij,nkj->nki", inv_chol, x[:, None, :] - params.means[None, :, :])
    half_logdet = np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    log_normal = -0.5 * d * math.log(2 * math.pi) - half_logdet - 0.5 * np.sum(y * y, axis=2)
    with np.errstate(divide="ignore"):
        return log_normal + np.log(params.weights)


def log_likelihood(x, weights, means, covs) -> float:
    r"""Log-likelihood :math:`\log p(x \mid \theta) = \sum_n \log \sum_k \pi_k \mathcal N(x_n \mid \mu_k, \Sigma_k)`.

    Computed with ``logsumexp`` over the components, so it does not underflow for far-away points.
    Summed over the points (multiply scikit-learn's per-point ``score`` by n to compare).

    Parameters
    ----------
    x, weights, means, covs
        As in :func:`log_joint`.

    Returns
    -------
    float
        In nats.
    """
    return float(np.sum(logsumexp(log_joint(x, weights, means, covs), axis=1)))


def e_step(x, weights, means, covs) -> np.ndarray:
    r"""E-step: the responsibilities :math:`r_{nk} = p(z_n = k \mid x_n, \theta)`.

    .. math::

        r_{nk} = \frac{\pi_k \mathcal N(x_n \mid \mu_k, \Sigma_k)}{\sum_j \pi_j \mathcal N(x_n \mid \mu_j, \Sigma_j)}
        = \exp\Big(\log p(x_n, k) - \operatorname{logsumexp}_j \log p(x_n, j)\Big).

    Setting :math:`q = r` makes :math:`D_{\mathrm{KL}}(q \| p(z \mid x, \theta)) = 0`, so the bound
    :math:`\mathcal L(q, \theta)` touches :math:`\log p(x \mid \theta)` (Bishop 2006, eq. 9.23 and §9.4).

    Parameters
    ----------
    x, weights, means, covs
        As in :func:`log_joint`.

    Returns
    -------
    ndarray, shape (n, K)
        Each row is a probability vector.
    """
    lj = log_joint(x, weights, means, covs)
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


def m_step(x, resp, *, reg_covar: float = REG_COVAR) -> GMMParams:
    r"""M-step: the parameters maximising :math:`\mathcal L(q, \theta)` for fixed responsibilities ``resp``.

    The entropy :math:`H(q)` in :math:`\mathcal L = \mathbb E_q[\log p(x, z \mid \theta)] + H(q)` does not
    depend on :math:`\theta`, so the M-step maximises the expected complete-data log-likelihood alone.
    With :math:`N_k = \sum_n r_{nk}` its maximiser is (Bishop 2006, eqs. 9.24-9.27)

    .. math::

        \pi_k = \frac{N_k}{n}, \qquad
        \mu_k = \frac{1}{N_k} \sum_n r_{nk} x_n, \qquad
        \Sigma_k = \frac{1}{N_k} \sum_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top + \varepsilon I,

    where :math:`\varepsilon` = ``reg_covar`` is a ridge that keeps a component that has collapsed onto a
    few points invertible. With ``reg_covar > 0`` the covariance update is the exact maximiser shifted
    by :math:`\varepsilon I`; with ``reg_covar=0`` it is exact. As in scikit-learn, :math:`N_k` gets
    :math:`10\,\epsilon_{\text{machine}}` added so that an empty component does not divide by zero.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
    resp : array_like, shape (n, K)
        Responsibilities; rows non-negative and summing to 1.
    reg_covar : float, default 1e-6
        Ridge added to the diagonal of every covariance (in squared data units).

    Returns
    -------
    GMMParams
        ``(weights, means, covs)``.

    Raises
    ------
    ValueError
        Bad shapes, negative or unnormalised responsibilities, or a covariance that is not positive
        definite even after the ridge.
    """
    x = _as_data(x)
    resp = _check_resp(resp, x.shape[0])
    reg_covar = _check_nonneg_float(reg_covar, "reg_covar")
    params = _m_step(x, resp, reg_covar)
    _cholesky(params.covs, "the M-step covariance")
    return params


def _m_step(x: np.ndarray, resp: np.ndarray, reg_covar: float) -> GMMParams:
    n, d = x.shape
    nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
    means = (resp.T @ x) / nk[:, None]
    covs = np.empty((nk.size, d, d))
    for k in range(nk.size):
        diff = x - means[k]
        covs[k] = (resp[:, k] * diff.T) @ diff / nk[k]
        covs[k].flat[:: d + 1] += reg_covar
    return GMMParams(nk / n, means, covs)


def elbo(x, resp, weights, means, covs) -> float:
    r"""Evidence lower bound :math:`\mathcal L(q, \theta)` for responsibilities ``resp`` = q.

    .. math::

        \mathcal L(q, \theta) = \sum_n \sum_k q_{nk} \big[\log \pi_k + \log \mathcal N(x_n \mid \mu_k, \Sigma_k)
        - \log q_{nk}\big] = \mathbb E_q[\log p(x, z \mid \theta)] + H(q),

    with :math:`0 \log 0 = 0`. For every q, :math:`\log p(x \mid \theta) - \mathcal L(q, \theta) =
    \sum_n D_{\mathrm{KL}}(q_n \| p(z_n \mid x_n, \theta)) \ge 0`, with equality iff q is the posterior.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
    resp : array_like, shape (n, K)
        Any distribution over the assignments, one row per point.
    weights, means, covs
        As in :func:`log_joint`.

    Returns
    -------
    float
        In nats, summed over the points. ``-inf`` if q puts mass on a component with zero weight.
    """
    x = _as_data(x)
    resp = _check_resp(resp, x.shape[0])
    lj = log_joint(x, weights, means, covs)
    if resp.shape != lj.shape:
        raise ValueError(f"resp has {resp.shape[1]} columns but the mixture has {lj.shape[1]} components")
    return _elbo(lj, resp)


def _elbo(lj: np.ndarray, resp: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):  # q = 0 contributes nothing, even where log p = -inf
        expected = np.where(resp > 0, resp * lj, 0.0)
    return float(np.sum(expected) - np.sum(xlogy(resp, resp)))


# --------------------------------------------------------------------------- initialisation
def _kmeans_pp_means(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new centre drawn with probability proportional to D(x)^2."""
    centres = [x[rng.integers(x.shape[0])]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(axis=-1), axis=1)
        total = d2.sum()
        probs = d2 / total if total > 0 else np.full(x.shape[0], 1.0 / x.shape[0])
        centres.append(x[rng.choice(x.shape[0], p=probs)])
    return np.asarray(centres, dtype=float)


def initial_params(x, n_components, *, init=None, seed=0, reg_covar=REG_COVAR) -> GMMParams:
    """The starting point :math:`\\theta_0` that :func:`fit_gmm_em` uses for the same arguments.

    Parameters
    ----------
    x, n_components, init, seed, reg_covar
        As in :func:`fit_gmm_em`.

    Returns
    -------
    GMMParams
        Equal weights, every covariance equal to the data covariance plus ``reg_covar`` times the
        identity, and means from k-means++ seeding (``init=None``), at random data points
        (``init="random"``), or as given in an ``init`` dict.
    """
    x = _as_data(x)
    k = _check_count(n_components, "n_components", minimum=1)
    reg_covar = _check_nonneg_float(reg_covar, "reg_covar")
    if x.shape[0] < k:
        raise ValueError(f"need at least n_components={k} data points, got {x.shape[0]}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    return _initial_params(x, k, init, np.random.default_rng(seed), reg_covar)


def _initial_params(x: np.ndarray, k: int, init, rng: np.random.Generator, reg_covar: float) -> GMMParams:
    n, d = x.shape
    data_cov = np.atleast_2d(np.cov(x, rowvar=False, bias=True)) + reg_covar * np.eye(d)
    default = {"weights": np.full(k, 1.0 / k), "covs": np.repeat(data_cov[None], k, axis=0)}
    if init is None or (isinstance(init, str) and init == "kmeans++"):
        default["means"] = _kmeans_pp_means(x, k, rng)
    elif isinstance(init, str) and init == "random":
        default["means"] = x[rng.choice(n, size=k, replace=False)]
    elif isinstance(init, dict):
        unknown = set(init) - set(INIT_KEYS)
        if unknown:
            raise ValueError(f"unknown init keys {sorted(unknown)}; allowed: {INIT_KEYS}")
        if "means" not in init:
            raise ValueError("an init dict must contain 'means' (weights and covs are optional)")
        default.update(init)
    else:
        raise ValueError(f"init must be None, 'kmeans++', 'random' or a dict of parameters, got {init!r}")
    params = _check_params(default["weights"], default["means"], default["covs"], d)
    if params.weights.size != k:
        raise ValueError(f"init has {params.weights.size} components but n_components={k}")
    return params


# --------------------------------------------------------------------------- the loop
def fit_gmm_em(x, n_components, *, n_iter=100, tol=1e-8, init=None, seed=0, reg_covar=REG_COVAR) -> EMResult:
    r"""Fit a Gaussian mixture with full covariances by EM, recording the bound at every half-step.

    Each iteration ``t`` does

    * **E-step** :math:`q_t(z_n = k) = p(z_n = k \mid x_n, \theta_{t-1})` (see :func:`e_step`), which sets the
      gap :math:`\log p(x \mid \theta) - \mathcal L(q, \theta) = D_{\mathrm{KL}}(q \| p(z \mid x, \theta))` to 0;
    * **M-step** :math:`\theta_t = \arg\max_\theta \mathcal L(q_t, \theta)` in closed form (see :func:`m_step`).

    Hence :math:`\log p(x \mid \theta_t) \ge \mathcal L(q_t, \theta_t) \ge \mathcal L(q_t, \theta_{t-1})
    = \log p(x \mid \theta_{t-1})`: the log-likelihood never decreases (Dempster, Laird & Rubin 1977;
    Bishop 2006, §9.4). The guarantee is exact for ``reg_covar=0``; the ridge perturbs each M-step by
    :math:`O(\varepsilon)`.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
        Data (a 1-D array is n points in one dimension). Needs n >= n_components, finite entries.
    n_components : int
        Number of mixture components K >= 1.
    n_iter : int, default 100
        Maximum number of EM iterations (>= 1).
    tol : float, default 1e-8
        Stop when the mean per-point log-likelihood changes by less than ``tol`` nats in one iteration
        (scikit-learn's criterion, applied to the log-likelihood). ``tol=0`` runs all ``n_iter``.
    init : None, "kmeans++", "random" or dict, default None
        ``None``/``"kmeans++"``: means by k-means++ seeding; ``"random"``: means at K distinct random data
        points. Both start with equal weights and every covariance equal to the data covariance (plus
        ridge). A dict gives the initial parameters ``{"means": ..., "weights": ..., "covs": ...}``
        (``means`` required, shapes as in :class:`GMMParams`).
    seed : int or None, default 0
        Seed of the ``numpy.random.default_rng`` used by the initialisation.
    reg_covar : float, default 1e-6
        Ridge added to each covariance diagonal in the M-step (squared data units), as in scikit-learn.

    Returns
    -------
    EMResult
        Final parameters and responsibilities plus the per-iteration ``log_likelihood``,
        ``elbo_before_e``, ``elbo_after_e``, ``elbo_after_m``, ``kl_gap`` and ``kl_gap_after_e``.

    Raises
    ------
    ValueError
        Non-finite or badly shaped data, fewer points than components, bad ``n_iter``/``tol``/
        ``reg_covar``/``init``, or a covariance that stops being positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.random.default_rng(0).normal(-2, 1, 200), np.random.default_rng(1).normal(3, 1, 200)])
    >>> res = fit_gmm_em(x, 2)
    >>> bool(np.all(np.diff(res.log_likelihood) >= -1e-9)), bool(np.max(np.abs(res.kl_gap_after_e)) < 1e-8)
    (True, True)
    """
    x = _as_data(x)
    n_iter = _check_count(n_iter, "n_iter", minimum=1)
    tol = _check_nonneg_float(tol, "tol")
    params = initial = initial_params(x, n_components, init=init, seed=seed, reg_covar=reg_covar)
    reg_covar = float(reg_covar)
    history = _run(x, params, n_iter, tol, reg_covar)
    params, q, converged = history.pop("params"), history.pop("resp"), history.pop("converged")
    return EMResult(
        weights=params.weights, means=params.means, covs=params.covs, responsibilities=q,
        n_iter=len(history["elbo_after_m"]), converged=converged, reg_covar=reg_covar, initial=initial,
        **{name: np.asarray(values) for name, values in history.items()},
    )


def _run(x: np.ndarray, params: GMMParams, n_iter: int, tol: float, reg_covar: float, *,
         e_step: str = "exact", m_step: str = "full") -> dict:
    """The EM loop; one log-joint evaluation per parameter value, reused by E-step, ELBO and log-lik.

    ``e_step="hard"`` replaces the posterior by a point mass on its mode; ``m_step="cyclic"`` updates one
    block (weights, means, covariances in turn) per iteration -- see :func:`fit_gmm_variant`.
    """
    n, k = x.shape[0], params.weights.size
    lj = _log_joint(x, params)
    lse = logsumexp(lj, axis=1, keepdims=True)
    q = np.full((n, k), 1.0 / k)
    h = {name: [] for name in ("elbo_before_e", "elbo_after_e", "elbo_after_m", "kl_gap", "kl_gap_after_e")}
    h["log_likelihood"] = [float(lse.sum())]
    converged = False
    for _ in range(n_iter):
        ll_old = h["log_likelihood"][-1]
        h["elbo_before_e"].append(_elbo(lj, q))
        h["kl_gap"].append(ll_old - h["elbo_before_e"][-1])
        q = np.exp(lj - lse)  # E-step
        if e_step == "hard":  # the best point mass: the mode of each posterior row
            q = np.eye(k)[np.argmax(lj, axis=1)]
        h["elbo_after_e"].append(_elbo(lj, q))
        h["kl_gap_after_e"].append(ll_old - h["elbo_after_e"][-1])
        if m_step == "cyclic":  # M-step, one block
            params = _block_m_step(x, q, params, len(h["elbo_after_m"]) % 3, reg_covar)
        else:  # M-step
            params = _m_step(x, q, reg_covar)
        lj = _log_joint(x, params)
        lse = logsumexp(lj, axis=1, keepdims=True)
        h["elbo_after_m"].append(_elbo(lj, q))
        h["log_likelihood"].append(float(lse.sum()))
        # a cyclic M-step moves one block per iteration: compare whole rounds of the three blocks, since one
        # block can stall while another still has far to go
        lag = 3 if m_step == "cyclic" else 1
        lls = h["log_likelihood"]
        if len(lls) > lag and abs(lls[-1] - lls[-1 - lag]) / n < tol:
            converged = True
            break
    return {**h, "params": params, "resp": np.exp(lj - lse), "converged": converged}


# --------------------------------------------------------------------------- variants: GEM, hard EM, MAP-EM
#: the E-steps and M-steps :func:`fit_gmm_variant` knows
E_STEPS = ("exact", "hard")
M_STEPS = ("full", "cyclic")


def _block_m_step(x: np.ndarray, resp: np.ndarray, params: GMMParams, block: int, reg_covar: float) -> GMMParams:
    """Maximise the expected complete-data log-likelihood over one block, the others held fixed.

    Block 0: the weights :math:`N_k / N`; block 1: the means (the weighted averages, whatever the
    covariances); block 2: the covariances, weighted scatter about the *current* means (plus the ridge).
    """
    n_k = resp.sum(axis=0) + 10 * np.finfo(float).eps
    weights, means, covs = params
    if block == 0:
        weights = n_k / x.shape[0]
    elif block == 1:
        means = (resp.T @ x) / n_k[:, None]
    else:
        d = x.shape[1]
        covs = np.empty_like(covs)
        for k in range(n_k.size):
            diff = x - means[k]
            covs[k] = (resp[:, k] * diff.T) @ diff / n_k[k] + reg_covar * np.eye(d)
    return GMMParams(weights, means, covs)


def fit_gmm_variant(x, n_components, *, e_step="exact", m_step="full", n_iter=100, tol=1e-8, init=None, seed=0,
                    reg_covar=REG_COVAR) -> EMResult:
    r"""EM with a restricted E-step or a partial M-step, recording the same history as :func:`fit_gmm_em`.

    * ``e_step="hard"``: :math:`q` is restricted to point masses, :math:`q_n = \delta_{z_n}`. Over that family
      :math:`\mathcal L(q, \theta) = \sum_n \log p(x_n, z_n \mid \theta)` (a point mass has no entropy), which
      the mode :math:`z_n = \arg\max_k p(x_n, k \mid \theta)` maximises. The E-step no longer closes the KL gap,
      so :math:`\mathcal L` still never decreases (coordinate ascent) but :math:`\log p(x \mid \theta)` may.
    * ``m_step="cyclic"``: a partial ("generalised") M-step that maximises
      :math:`\mathcal L(q, \theta)` over one block of :math:`\theta` per iteration -- the weights, then the means,
      then the covariances. It raises :math:`\mathcal L(q, \cdot)` without maximising it, which is all the
      monotonicity proof needs (Dempster, Laird & Rubin 1977; Neal & Hinton 1998).

    ``e_step="exact", m_step="full"`` is :func:`fit_gmm_em`.

    Parameters
    ----------
    x, n_components, n_iter, init, seed, reg_covar
        As in :func:`fit_gmm_em`.
    tol : float, default 1e-8
        As in :func:`fit_gmm_em`, except that with ``m_step="cyclic"`` the change is measured over one whole round
        of the three blocks (three iterations), not one iteration: a single block can change the log-likelihood by
        almost nothing while another still has far to go, and a per-iteration rule then stops some runs several
        nats short of where they are heading (chapter 7 measures it on iris).
    e_step : {"exact", "hard"}, default "exact"
    m_step : {"full", "cyclic"}, default "full"

    Returns
    -------
    EMResult
        With ``e_step="hard"``, ``responsibilities`` is still the exact posterior at the final parameters
        and ``kl_gap_after_e`` is the gap the hard E-step leaves (no longer zero).

    Raises
    ------
    ValueError
        As :func:`fit_gmm_em`, or an unknown ``e_step``/``m_step``.
    """
    if e_step not in E_STEPS:
        raise ValueError(f"e_step must be one of {E_STEPS}, got {e_step!r}")
    if m_step not in M_STEPS:
        raise ValueError(f"m_step must be one of {M_STEPS}, got {m_step!r}")
    x = _as_data(x)
    n_iter = _check_count(n_iter, "n_iter", minimum=1)
    tol = _check_nonneg_float(tol, "tol")
    params = initial = initial_params(x, n_components, init=init, seed=seed, reg_covar=reg_covar)
    reg_covar = float(reg_covar)
    history = _run(x, params, n_iter, tol, reg_covar, e_step=e_step, m_step=m_step)
    params, q, converged = history.pop("params"), history.pop("resp"), history.pop("converged")
    return EMResult(
        weights=params.weights, means=params.means, covs=params.covs, responsibilities=q,
        n_iter=len(history["elbo_after_m"]), converged=converged, reg_covar=reg_covar, initial=initial,
        **{name: np.asarray(values) for name, values in history.items()},
    )


def expected_complete_log_likelihood(x, resp, weights, means, covs) -> float:
    r"""The M-step objective :math:`Q(\theta \mid \theta_{\text{old}}) = \mathbb E_q[\log p(x, z \mid \theta)]`.

    With ``resp`` the posterior under :math:`\theta_{\text{old}}`, the proximal identity (Chrétien & Hero 2000)

    .. math::

        Q(\theta \mid \theta_{\text{old}}) + H\big(p(z \mid x, \theta_{\text{old}})\big)
        = \log p(x \mid \theta) - D_{\mathrm{KL}}\big(p(z \mid x, \theta_{\text{old}}) \,\|\, p(z \mid x, \theta)\big)

    says that the M-step maximises the log-likelihood minus a KL penalty for moving the posterior.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
    resp : array_like, shape (n, K)
        Any distribution over the assignments, one row per point.
    weights, means, covs
        As in :func:`log_joint`.

    Returns
    -------
    float
        In nats, summed over the points (``-inf`` if ``resp`` puts mass on a zero-weight component).
    """
    x = _as_data(x)
    resp = _check_resp(resp, x.shape[0])
    lj = log_joint(x, weights, means, covs)
    if resp.shape != lj.shape:
        raise ValueError(f"resp has {resp.shape[1]} columns but the mixture has {lj.shape[1]} components")
    with np.errstate(invalid="ignore"):
        return float(np.sum(np.where(resp > 0, resp * lj, 0.0)))


class GMMPrior(NamedTuple):
    r"""A conjugate prior for MAP-EM: Dirichlet on the weights, inverse-Wishart on each covariance.

    .. math::

        p(\theta) = \operatorname{Dir}(\pi \mid \alpha, \dots, \alpha)
        \prod_k \mathcal W^{-1}(\Sigma_k \mid \Psi, \nu),

    with a flat prior on the means. :math:`\mathcal W^{-1}(\Sigma \mid \Psi, \nu) \propto
    |\Sigma|^{-(\nu + d + 1)/2} \exp(-\tfrac12 \operatorname{tr}(\Psi \Sigma^{-1}))` (scipy's ``invwishart``).

    Attributes
    ----------
    alpha : float
        Dirichlet concentration, >= 1 (1 is flat).
    psi : ndarray, shape (d, d)
        Inverse-Wishart scale, symmetric positive definite (squared data units).
    dof : float
        Inverse-Wishart degrees of freedom :math:`\nu > d - 1`.
    """

    alpha: float
    psi: np.ndarray
    dof: float


def _check_prior(prior, d: int) -> GMMPrior:
    if not isinstance(prior, GMMPrior):
        raise ValueError(f"prior must be a GMMPrior, got {type(prior).__name__}")
    alpha = _check_nonneg_float(prior.alpha, "prior.alpha")
    if alpha < 1:
        raise ValueError(f"prior.alpha must be >= 1 (below 1 the MAP weights can leave the simplex), got {alpha}")
    psi = as_float_array(prior.psi, "prior.psi")
    if psi.shape != (d, d):
        raise ValueError(f"prior.psi must have shape {(d, d)}, got {psi.shape}")
    _cholesky(psi[None], "prior.psi")
    dof = _check_nonneg_float(prior.dof, "prior.dof")
    if dof <= d - 1:
        raise ValueError(f"prior.dof must exceed d - 1 = {d - 1}, got {dof}")
    return GMMPrior(alpha, psi, dof)


def default_prior(x, n_components, *, alpha=1.0, dof=None) -> GMMPrior:
    r"""The data-dependent prior of Fraley & Raftery (2007) for the covariances.

    :math:`\nu = d + 2` and :math:`\Psi = \widehat\Sigma / K^{2/d}`, with :math:`\widehat\Sigma` the covariance of
    all the data: each component's prior covariance is the data covariance shrunk to the volume of one of
    K equal parts.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
    n_components : int
    alpha : float, default 1.0
        Dirichlet concentration on the weights (1 = flat).
    dof : float, optional
        Degrees of freedom; default ``d + 2``.

    Returns
    -------
    GMMPrior
    """
    x = _as_data(x)
    k = _check_count(n_components, "n_components", minimum=1)
    d = x.shape[1]
    psi = np.atleast_2d(np.cov(x, rowvar=False, bias=True)) / k ** (2.0 / d)
    return _check_prior(GMMPrior(alpha, psi, d + 2.0 if dof is None else dof), d)


def log_prior(weights, covs, prior: GMMPrior) -> float:
    r"""Log density of the :class:`GMMPrior` at the weights and covariances (nats; the means are flat).

    .. math::

        \log \operatorname{Dir}(\pi \mid \alpha) = \log\Gamma(K\alpha) - K \log\Gamma(\alpha)
        + (\alpha - 1) \sum_k \log \pi_k, \\
        \log \mathcal W^{-1}(\Sigma \mid \Psi, \nu) = \tfrac\nu2 \log|\Psi| - \tfrac{\nu d}2 \log 2
        - \log\Gamma_d(\tfrac\nu2) - \tfrac{\nu + d + 1}2 \log|\Sigma| - \tfrac12 \operatorname{tr}(\Psi\Sigma^{-1}).

    Parameters
    ----------
    weights : array_like, shape (K,)
    covs : array_like, shape (K, d, d)
    prior : GMMPrior

    Returns
    -------
    float
    """
    weights = as_float_array(weights, "weights")
    covs = as_float_array(covs, "covs")
    if covs.ndim != 3 or covs.shape[0] != weights.size or covs.shape[1] != covs.shape[2]:
        raise ValueError(f"covs must have shape (K, d, d) with K = {weights.size}, got {covs.shape}")
    d = covs.shape[1]
    prior = _check_prior(prior, d)
    k = weights.size
    alpha, psi, nu = prior
    log_dir = gammaln(k * alpha) - k * gammaln(alpha)
    if alpha != 1:  # (alpha - 1) log(pi_k) is 0 for a flat prior, even at pi_k = 0
        with np.errstate(divide="ignore"):
            log_dir += (alpha - 1) * float(np.sum(np.log(weights)))
    chol = _cholesky(covs)
    logdet = 2 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    trace = np.trace(np.linalg.solve(covs, np.broadcast_to(psi, covs.shape)), axis1=1, axis2=2)
    const = 0.5 * nu * np.linalg.slogdet(psi)[1] - 0.5 * nu * d * math.log(2) - multigammaln(0.5 * nu, d)
    return float(log_dir + np.sum(const - 0.5 * (nu + d + 1) * logdet - 0.5 * trace))


def m_step_map(x, resp, prior: GMMPrior) -> GMMParams:
    r"""MAP M-step: maximise :math:`Q(\theta) + \log p(\theta)` for fixed responsibilities.

    With :math:`N_k = \sum_n r_{nk}`, :math:`\bar x_k` the weighted mean and
    :math:`S_k = \sum_n r_{nk} (x_n - \bar x_k)(x_n - \bar x_k)^\top` the (unnormalised) weighted scatter,

    .. math::

        \pi_k = \frac{N_k + \alpha - 1}{N + K(\alpha - 1)}, \qquad \mu_k = \bar x_k, \qquad
        \Sigma_k = \frac{S_k + \Psi}{N_k + \nu + d + 1}.

    A component with no points gets :math:`\Sigma_k = \Psi / (\nu + d + 1)`: never singular, no ridge needed.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
    resp : array_like, shape (n, K)
    prior : GMMPrior

    Returns
    -------
    GMMParams
    """
    x = _as_data(x)
    resp = _check_resp(resp, x.shape[0])
    return _m_step_map(x, resp, _check_prior(prior, x.shape[1]))


def _m_step_map(x: np.ndarray, resp: np.ndarray, prior: GMMPrior) -> GMMParams:
    n, d = x.shape
    k = resp.shape[1]
    alpha, psi, nu = prior
    nk = resp.sum(axis=0)
    weights = (nk + alpha - 1) / (n + k * (alpha - 1))
    means = (resp.T @ x) / (nk + 10 * np.finfo(float).eps)[:, None]
    covs = np.empty((k, d, d))
    for j in range(k):
        diff = x - means[j]
        covs[j] = ((resp[:, j] * diff.T) @ diff + psi) / (nk[j] + nu + d + 1)
    return GMMParams(weights, means, covs)


@dataclass(frozen=True)
class MAPEMResult:
    r"""What :func:`fit_gmm_map_em` returns.

    Attributes
    ----------
    weights, means, covs : ndarray
        The final parameters, shapes (K,), (K, d), (K, d, d).
    log_likelihood : ndarray, shape (n_iter + 1,)
        :math:`\log p(x \mid \theta_t)`, nats.
    log_posterior : ndarray, shape (n_iter + 1,)
        :math:`\log p(x \mid \theta_t) + \log p(\theta_t)`, the objective MAP-EM never decreases.
    n_iter : int
    converged : bool
    prior : GMMPrior
    initial : GMMParams
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    log_likelihood: np.ndarray
    log_posterior: np.ndarray
    n_iter: int
    converged: bool
    prior: GMMPrior
    initial: GMMParams

    @property
    def params(self) -> GMMParams:
        """The final parameters as a :class:`GMMParams`."""
        return GMMParams(self.weights, self.means, self.covs)


def fit_gmm_map_em(x, n_components, prior: GMMPrior, *, n_iter=100, tol=1e-8, init=None, seed=0) -> MAPEMResult:
    r"""MAP-EM: EM on :math:`\log p(x \mid \theta) + \log p(\theta)` with the conjugate :class:`GMMPrior`.

    The E-step is unchanged; the M-step is :func:`m_step_map`. The monotonicity proof of EM carries over
    with :math:`\log p(\theta)` added to both sides, so the log posterior never decreases (Fraley & Raftery
    2007). The start is :func:`initial_params` with the same ``init`` and ``seed``.

    Parameters
    ----------
    x, n_components, n_iter, tol, init, seed
        As in :func:`fit_gmm_em` (``tol`` applies to the mean per-point log posterior).
    prior : GMMPrior
        E.g. :func:`default_prior`.

    Returns
    -------
    MAPEMResult
    """
    x = _as_data(x)
    n_iter = _check_count(n_iter, "n_iter", minimum=1)
    tol = _check_nonneg_float(tol, "tol")
    prior = _check_prior(prior, x.shape[1])
    params = initial = initial_params(x, n_components, init=init, seed=seed)
    lj = _log_joint(x, params)
    lls = [float(logsumexp(lj, axis=1).sum())]
    lps = [lls[-1] + log_prior(params.weights, params.covs, prior)]
    converged = False
    for _ in range(n_iter):
        q = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        params = _m_step_map(x, q, prior)
        lj = _log_joint(x, params)
        lls.append(float(logsumexp(lj, axis=1).sum()))
        lps.append(lls[-1] + log_prior(params.weights, params.covs, prior))
        if abs(lps[-1] - lps[-2]) / x.shape[0] < tol:
            converged = True
            break
    return MAPEMResult(params.weights, params.means, params.covs, np.asarray(lls), np.asarray(lps),
                       len(lls) - 1, converged, prior, initial)
