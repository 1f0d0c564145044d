"""The VAE's KL term (chapter 6)."""

from __future__ import annotations

import functools
import sys

import numpy as np

from klcourse._validate import as_float_array, scalar_or_array
from klcourse.gaussians import expm1mx


def vae_kl(mu, logvar, *, axis=-1):
    r"""KL term of a VAE: ``D(N(mu, diag(exp(logvar))) || N(0, I))``, summed over ``axis``.

    .. math::

        D\big(q(z\mid x)\,\|\,p(z)\big)
        = \tfrac12\sum_i\big(e^{v_i} + \mu_i^2 - 1 - v_i\big)
        = \tfrac12\sum_i\big(\varphi(v_i) + \mu_i^2\big),
        \qquad v_i = \log\sigma_i^2,\ \varphi(v) = e^v - 1 - v \ge 0.

    This is the KL divergence of the standard-normal prior ``p`` from the encoder's posterior
    ``q`` (expectation under ``q``, the first argument), the regulariser in the ELBO of
    Kingma & Welling (2014, appendix B).  :math:`\varphi` is evaluated without cancellation (Taylor series for
    ``|v| < 1``, see :func:`klcourse.gaussians.expm1mx`), so a nearly collapsed dimension
    (``mu ~ 0``, ``logvar ~ 0``) gets its tiny KL to full relative accuracy instead of
    rounding noise, and no term is ever negative.

    Parameters
    ----------
    mu : array_like or torch.Tensor, shape (..., d)
        Posterior means.
    logvar : array_like or torch.Tensor, shape (..., d)
        Posterior **log-variances** ``log sigma^2`` (not standard deviations); broadcasts
        with ``mu``.
    axis : int, default -1
        Latent axis to sum over; other axes are a batch (average them yourself).

    Returns
    -------
    float, numpy.ndarray or torch.Tensor
        NumPy inputs give float64 NumPy output (a float for 1-D input).  If either input
        is a ``torch.Tensor`` the result is a tensor of the promoted floating dtype
        (float32 and float64 both work) on the same device, built from torch operations
        only, so it is differentiable: ``d/dmu = mu`` and ``d/dlogvar = (e^v - 1)/2``.

    Raises
    ------
    ValueError
        NaN/inf in either input, shapes that do not broadcast, 0-d inputs (nothing to sum),
        or ``axis`` out of range.

    Notes
    -----
    Equals ``kl_diag_normal(mu, exp(logvar / 2), 0, 1)`` up to the rounding of
    ``exp(logvar / 2)``.  In float32 ``e^v`` overflows for ``v > 88`` (result ``inf``).

    References
    ----------
    Kingma, D. P. & Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR, appendix B.
    """
    torch = sys.modules.get("torch")
    if torch is not None and (isinstance(mu, torch.Tensor) or isinstance(logvar, torch.Tensor)):
        return _vae_kl_torch(torch, mu, logvar, axis)
    mu, logvar = as_float_array(mu, "mu"), as_float_array(logvar, "logvar")
    shape = _broadcast_shape(np.broadcast_shapes, mu.shape, logvar.shape, axis)
    per_dim = 0.5 * (expm1mx(np.broadcast_to(logvar, shape)) + mu * mu)
    return scalar_or_array(np.sum(per_dim, axis=axis))


def _broadcast_shape(broadcast_shapes, shape_mu, shape_logvar, axis) -> tuple:
    try:
        shape = tuple(broadcast_shapes(shape_mu, shape_logvar))
    except (ValueError, RuntimeError):
        raise ValueError(
            f"shape mismatch: mu has shape {tuple(shape_mu)}, logvar has shape {tuple(shape_logvar)}"
        ) from None
    if len(shape) == 0:
        raise ValueError("vae_kl needs at least 1-D inputs (the latent axis to sum over)")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for inputs with {len(shape)} dimension(s)")
    return shape


def _vae_kl_torch(torch, mu, logvar, axis):
    """Same stable formula with torch ops only (keeps the autograd graph)."""
    tensors = [t for t in (mu, logvar) if isinstance(t, torch.Tensor)]
    float_dtypes = [t.dtype for t in tensors if t.dtype.is_floating_point]
    dtype = functools.reduce(torch.promote_types, float_dtypes, float_dtypes[0]) if float_dtypes else None
    dtype = dtype or torch.get_default_dtype()
    mu = torch.as_tensor(mu, dtype=dtype, device=tensors[0].device)
    logvar = torch.as_tensor(logvar, dtype=dtype, device=tensors[0].device)
    for name, t in (("mu", mu), ("logvar", logvar)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf; every entry must be finite")
    shape = _broadcast_shape(torch.broadcast_shapes, mu.shape, logvar.shape, axis)
    per_dim = 0.5 * (expm1mx(logvar.expand(shape), xp=torch) + mu * mu)
    return per_dim.sum(dim=axis)
