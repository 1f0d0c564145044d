"""A small variational autoencoder on the 8x8 digits (chapter 6).

This module imports :mod:`torch`; ``import klcourse`` does not import it (the KL term itself,
:func:`klcourse.vae_kl`, lives in :mod:`klcourse.vae` and works without torch).

The model
---------
* data: :func:`sklearn.datasets.load_digits` (1797 images of 8x8 pixels, bundled with scikit-learn,
  no download), pixels scaled to [0, 1] and **binarised** at 1/2 so that the Bernoulli decoder is a real
  probability model and every ELBO below is a true lower bound on ``log p(x)`` in nats;
* encoder ``q(z|x) = N(mu(x), diag(exp(logvar(x))))``, an MLP 64 -> hidden -> 2d;
* prior ``p(z) = N(0, I)``;
* decoder ``p(x|z) = prod_i Bernoulli(x_i; sigmoid(logit_i(z)))``, an MLP d -> hidden -> 64, optionally
  made *autoregressive* (``logit_i`` also depends on the pixels ``x_<i`` through a strictly lower-triangular
  linear map, a fully visible sigmoid belief net) -- a decoder powerful enough to model the digits without
  ``z``, the textbook setting for posterior collapse.

Training minimises ``distortion + beta * regulariser`` with the regulariser either the KL term
(optionally with a linear warm-up of ``beta`` -- *KL annealing* -- or with *free bits*, a floor of
``free_bits`` nats under each dimension's batch-mean KL) or, for the "why not MSE?" experiment, the squared
error between ``(mu, sigma)`` and ``(0, 1)``.  Evaluation always uses the true ELBO with ``beta = 1`` and
the real KL term, whatever the model was trained with.

References
----------
Kingma, D. P. & Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.
Bowman, S. R. et al. (2016). Generating Sentences from a Continuous Space. CoNLL (KL annealing).
Kingma, D. P. et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow. NeurIPS
(free bits).
Higgins, I. et al. (2017). beta-VAE. ICLR.  Alemi, A. A. et al. (2018). Fixing a Broken ELBO. ICML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from klcourse._optional import missing_torch

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ModuleNotFoundError as exc:  # the core package has no torch: say which extra installs it
    raise missing_torch("klcourse.vae_model (the chapter 6 VAE)", exc) from exc

from klcourse.distillation import _Adam  # torch.optim's Adam imports torch._dynamo (>1 s)
from klcourse.vae import vae_kl

__all__ = [
    "Digits",
    "Evaluation",
    "active_units",
    "aggregate_posterior_kl",
    "burda_activity",
    "elbo_mc",
    "empirical_log_mass",
    "evaluate",
    "expected_log_likelihood_gh",
    "gaussian_decoder_nll",
    "grid_posterior",
    "image_grid",
    "iwae_bound",
    "kl_per_dim",
    "load_binary_digits",
    "log_evidence_gh",
    "log_mean_exp",
    "member_log_joint",
    "mse_penalty",
    "optimise_gaussian_q",
    "reconstruction_nll",
    "reparameterise",
    "train_vaes",
    "VAEStack",
]

#: a latent dimension is *active* when its KL, averaged over the data, exceeds this many nats
ACTIVE_THRESHOLD = 0.01


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Digits:
    """Binarised 8x8 digits split into train and test sets (images as float32 tensors of 0/1)."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: np.ndarray
    y_test: np.ndarray


def load_binary_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """Load scikit-learn's 8x8 digits, scale pixels to [0, 1], binarise at 1/2, split train/test.

    The split is stratified by digit and fixed by ``seed``.  Pixel values are 0..16 in the raw data;
    ``x = (raw / 16 > 0.5)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0 > 0.5).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return Digits(torch.from_numpy(x_tr), torch.from_numpy(x_te), y_tr, y_te)


# --------------------------------------------------------------------------- model
class StackedLinear(nn.Module):
    """``M`` independent linear layers applied side by side: (M, n, fan_in) -> (M, n, fan_out)."""

    def __init__(self, n_models: int, fan_in: int, fan_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)  # the default initialisation of torch.nn.Linear
        self.weight = nn.Parameter(torch.empty(n_models, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_models, 1, fan_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class _TanhFunction(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return torch.sigmoid_(2.0 * x).mul_(2.0).sub_(1.0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)  # grad * (1 - y**2), differentiable again


class Tanh(nn.Module):
    """``tanh(x)`` computed as ``2 sigmoid(2x) - 1``, with the gradient ``1 - tanh(x)**2``.

    The same function as :class:`torch.nn.Tanh` up to float32 rounding (absolute difference below
    3e-7), about twice as fast forward and backward on CPU, where torch's ``sigmoid`` kernel is much
    quicker than its ``tanh``.  A test compares values and gradients with ``torch.tanh``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _TanhFunction.apply(x)


class VAEStack(nn.Module):
    """``n_models`` independent VAEs with the same architecture, evaluated in one batched pass.

    Gaussian encoder, standard-normal prior, Bernoulli decoder (see the module docstring).  Member ``m``
    has its own weights ``[m]`` in every layer; nothing is shared, so training the stack on the sum of the
    members' losses with Adam (an element-wise optimiser) is the same as training each member alone --
    it is only faster, because a tiny network spends its time in per-operation overhead.

    Parameters
    ----------
    n_models : int
        Number of members M.
    n_latent : int
        Latent dimension d.
    n_hidden : int
        Width of the single hidden layer of encoder and decoder.
    n_pixels : int
        Data dimension (64 for 8x8 images).
    autoregressive : bool or sequence of bool
        For the members where it is True the decoder adds ``W x`` with ``W`` strictly lower triangular to
        its logits, so pixel i is predicted from ``z`` *and* the pixels before it (a fully visible sigmoid
        belief net).  One bool applies to every member.
    """

    def __init__(self, n_models: int = 1, n_latent: int = 8, n_hidden: int = 64, n_pixels: int = 64,
                 autoregressive=False):
        super().__init__()
        self.n_models, self.n_latent, self.n_pixels = n_models, n_latent, n_pixels
        flags = torch.as_tensor(autoregressive, dtype=torch.bool).expand(n_models).clone()
        self.register_buffer("is_autoregressive", flags)
        self.encoder = nn.Sequential(StackedLinear(n_models, n_pixels, n_hidden), Tanh(),
                                     StackedLinear(n_models, n_hidden, 2 * n_latent))
        self.decoder = nn.Sequential(StackedLinear(n_models, n_latent, n_hidden), Tanh(),
                                     StackedLinear(n_models, n_hidden, n_pixels))
        self.autoregressive = bool(flags.any())
        if self.autoregressive:  # weights only for the autoregressive members, in member order
            self.register_buffer("ar_members", torch.nonzero(flags).flatten())
            n_ar = len(self.ar_members)
            self.pixel_weights = nn.Parameter(torch.zeros(n_ar, n_pixels, n_pixels))
            # mask[i, j] = 1 when pixel i comes before pixel j
            self.register_buffer("mask", torch.triu(torch.ones(n_pixels, n_pixels), diagonal=1))

    def _stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Give every member the same images: (n, k) -> (M, n, k); (M, n, k) passes through."""
        return x.expand(self.n_models, *x.shape) if x.dim() == 2 else x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, logvar)`` of ``q(z|x)``, each of shape (M, n, d)."""
        mu, logvar = self.encoder(self._stacked(x)).chunk(2, dim=-1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits of ``p(x|z)``, shape (M, n, 64); the autoregressive decoder also needs ``x``."""
        logits = self.decoder(self._stacked(z))
        if self.autoregressive:
            if x is None:
                raise ValueError("the autoregressive decoder needs x (the pixels before each pixel)")
            x = self._stacked(x)
            if len(self.ar_members) < self.n_models:  # only the autoregressive members' products
                x = x.index_select(0, self.ar_members)
            pixel_part = torch.bmm(x, self.pixel_weights * self.mask)
            if len(self.ar_members) == self.n_models:
                return logits + pixel_part
            logits = logits.index_add(0, self.ar_members, pixel_part)
        return logits

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws ``z ~ p(z)`` per member, shape (M, n, 64).

        Returns pixel probabilities (mean images); for autoregressive members, whose pixel probabilities
        depend on the earlier pixels, binary images drawn one pixel at a time.
        """
        z = torch.randn(self.n_models, n, self.n_latent, generator=generator)
        images = torch.sigmoid(self.decoder(z))
        if not self.autoregressive:
            return images
        x = torch.zeros(self.n_models, n, self.n_pixels)
        for i in range(self.n_pixels):
            p = torch.sigmoid(self.decode_logits(z, x)[..., i])
            x[..., i] = torch.bernoulli(p, generator=generator)
        return torch.where(self.is_autoregressive[:, None, None], x, images)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None):
    """``z = mu + sigma * eps`` with ``eps ~ N(0, I)`` and ``sigma = exp(logvar / 2)``: differentiable in both."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def reconstruction_nll(model: VAEStack, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``-log p(x|z)`` in nats per image (Bernoulli likelihood summed over pixels), shape (M, n)."""
    logits = model.decode_logits(z, x)
    return F.binary_cross_entropy_with_logits(logits, model._stacked(x), reduction="none").sum(dim=-1)


def kl_per_dim(mu, logvar):
    """``D(q(z_j|x) || N(0, 1))`` for every latent dimension j separately, via :func:`klcourse.vae_kl`.

    Same shape as ``mu``: ``vae_kl`` sums over a trailing axis of length 1, i.e. over nothing.
    """
    return vae_kl(mu[..., None], logvar[..., None], axis=-1)


class _TrainingKL(torch.autograd.Function):
    """The KL term per dimension for training: ``(expm1(v) - v + mu**2) / 2`` and its closed-form gradient.

    The same values as :func:`kl_per_dim` up to float32 rounding (``expm1(v) - v`` loses relative accuracy
    only where the KL is far below anything training can resolve), with the gradient ``d/dmu = mu``,
    ``d/dlogvar = expm1(v) / 2`` written out: autograd through ``vae_kl``'s 17-term series for small
    ``|v|`` costs more than the rest of a training step.  Tests compare both with :func:`kl_per_dim`.
    """

    @staticmethod
    def forward(mu, logvar):
        return 0.5 * (torch.expm1(logvar) - logvar + mu * mu)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        mu, logvar = ctx.saved_tensors
        return grad * mu, grad * (0.5 * torch.expm1(logvar))


def mse_penalty(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The "why not MSE?" regulariser: the mean squared error between ``(mu_j, sigma_j)`` and ``(0, 1)``.

    ``sum_j ((mu_j - 0)**2 + (sigma_j - 1)**2) / 2`` -- the mean over the two parameters of each latent
    dimension, summed over dimensions like the KL term.  Its ``mu`` part equals the KL's ``mu_j**2 / 2``;
    near ``sigma = 1`` the KL's width part is ``(sigma - 1)**2 + O((sigma - 1)**3)``, twice this one, and as
    ``sigma -> 0`` the KL grows like ``-log sigma`` while this penalty stays below 1/2.
    """
    return 0.5 * (mu**2 + (torch.exp(0.5 * logvar) - 1.0) ** 2).sum(dim=-1)


# --------------------------------------------------------------------------- training
#: what a member's configuration may set, with the defaults
MEMBER_DEFAULTS = {"beta": 1.0, "regulariser": "kl", "free_bits": 0.0, "warmup": 0, "autoregressive": False,
                   "minibatch_seed": None}


@dataclass
class History:
    """Training curves recorded every ``every`` steps on the minibatch (nats per image).

    ``distortion[r]`` has shape (M,), ``kl_per_dim[r]`` shape (M, d), for record ``r`` at ``step[r]``.
    """

    step: list = field(default_factory=list)
    distortion: list = field(default_factory=list)
    kl_per_dim: list = field(default_factory=list)


def _member_settings(configs) -> dict:
    settings = {key: [] for key in MEMBER_DEFAULTS}
    for config in configs:
        unknown = set(config) - set(MEMBER_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown member setting(s) {sorted(unknown)}; allowed: {sorted(MEMBER_DEFAULTS)}")
        full = {**MEMBER_DEFAULTS, **config}
        if full["regulariser"] not in ("kl", "mse"):
            raise ValueError(f"unknown regulariser {full['regulariser']!r}; expected 'kl' or 'mse'")
        seed = full["minibatch_seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"minibatch_seed must be None or a non-negative int, got {seed!r}")
        for key, value in full.items():
            settings[key].append(value)
    return settings


def _regulariser(mu, logvar, is_mse: torch.Tensor, free_bits: torch.Tensor) -> torch.Tensor:
    """Per-member regulariser, shape (M,): KL term (with its free-bits floor) or the MSE penalty."""
    kl = _TrainingKL.apply(mu, logvar).mean(dim=1)  # (M, d): batch-mean KL of each latent dimension
    kl = torch.maximum(kl, free_bits[:, None])  # free bits: no gradient pushes a dimension below the floor
    return torch.where(is_mse, mse_penalty(mu, logvar).mean(dim=1), kl.sum(dim=-1))


def train_vaes(x: torch.Tensor, configs, *, n_latent: int = 8, n_hidden: int = 64,
               steps: int = 800, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
               every: int = 10) -> tuple[VAEStack, History]:
    """Train one VAE per entry of ``configs`` (side by side) with Adam on ``distortion + beta_t * regulariser``.

    Parameters
    ----------
    x : torch.Tensor, shape (n, 64)
        Binary training images.
    configs : sequence of dict
        One dict per member with any of: ``beta`` (weight of the regulariser, default 1 -- with the KL
        term that is the ELBO), ``regulariser`` (``"kl"``: the KL term :math:`\\sum_j D(q(z_j|x)\\|N(0,1))`
        from :func:`klcourse.vae_kl`; ``"mse"``: :func:`mse_penalty`), ``free_bits`` (floor in nats under
        each dimension's batch-mean KL, 0 = off), ``warmup`` (KL annealing:
        ``beta_t = beta * min(1, t / warmup)``, 0 = off), ``autoregressive`` (the collapse-prone decoder
        of :class:`VAEStack`, default False), ``minibatch_seed`` (None: the minibatches shared by the
        stack, drawn from ``seed``; an int: this member draws its own minibatches from a generator with
        that seed -- for repeats of a configuration that differ in data order as well as in
        initialisation).
    n_latent, n_hidden
        Latent dimension and hidden width, shared by all members.
    steps, batch_size, lr, seed, every
        Adam steps, minibatch size (the same minibatch for every member unless it has its own
        ``minibatch_seed``), learning rate, seed of the initialisation, shared minibatches and noise;
        the history is recorded every ``every`` steps.

    Returns
    -------
    model : VAEStack
        Member ``m`` was trained with ``configs[m]``.
    history : History
    """
    settings = _member_settings(configs)
    beta = torch.tensor(settings["beta"], dtype=torch.float32)
    warmup = torch.tensor(settings["warmup"], dtype=torch.float32)
    free_bits = torch.tensor(settings["free_bits"], dtype=torch.float32)
    is_mse = torch.tensor([r == "mse" for r in settings["regulariser"]])
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = VAEStack(len(beta), n_latent, n_hidden, x.shape[1], settings["autoregressive"])
    params = list(model.parameters())
    adam = _Adam(params, lr=lr)
    history = History()
    own = [(m, s) for m, s in enumerate(settings["minibatch_seed"]) if s is not None]
    if own:  # the minibatches of the members with their own data order, drawn at once: (steps, n_own, batch)
        own_members = torch.tensor([m for m, _ in own])
        own_idx = torch.stack([torch.randint(len(x), (steps, batch_size), generator=torch.Generator().manual_seed(s))
                               for _, s in own], dim=1)
    # the weight of the regulariser at every step, shape (steps, M): beta, or beta ramped up during warm-up
    t_all = torch.arange(steps)[:, None]
    beta_schedule = torch.where(warmup > 0, beta * torch.clamp(t_all / warmup.clamp(min=1), max=1.0), beta)
    for t in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=gen)  # the shared minibatch
        if own:  # members with their own data order: one minibatch per member, shape (M, batch, pixels)
            idx = idx.expand(len(beta), -1).clone()
            idx[own_members] = own_idx[t]
        xb = x.index_select(0, idx.flatten()).view(*idx.shape, x.shape[1])  # x[idx], quicker
        mu, logvar = model.encode(xb)
        distortion = reconstruction_nll(model, xb, reparameterise(mu, logvar, gen)).mean(dim=1)
        loss = (distortion + beta_schedule[t] * _regulariser(mu, logvar, is_mse, free_bits)).sum()
        adam.step(torch.autograd.grad(loss, params))
        if t % every == 0 or t == steps - 1:
            history.step.append(t)
            history.distortion.append(distortion.detach().numpy())
            with torch.no_grad():
                history.kl_per_dim.append(kl_per_dim(mu, logvar).mean(dim=1).numpy())
    return model.eval(), history


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Evaluation:
    """Averages over a data set in nats per image, for one model: ``elbo = -(distortion + rate)``."""

    distortion: float
    rate: float
    elbo: float
    kl_per_dim: np.ndarray
    active_units: int


def active_units(kl_dims, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions whose data-averaged KL exceeds ``threshold`` nats."""
    return int(np.sum(np.asarray(kl_dims) > threshold))


def burda_activity(mu) -> np.ndarray:
    """Burda et al.'s (2016) activity statistic ``A_j = Var_x(E_q[z_j | x])`` of every latent dimension.

    ``mu`` holds the posterior means of ``n`` images, shape (..., n, d); the result, shape (..., d), is
    their variance over the images (divisor ``n``).  Burda et al. call dimension ``j`` active when
    ``A_j > 0.01``.  This is a *different* criterion from :func:`active_units`, which thresholds the
    data-averaged KL of each dimension: a dimension can have a large KL with a constant mean (a
    posterior narrower than the prior but centred at the same point for every image).
    """
    mu = torch.as_tensor(mu).double()
    return mu.var(dim=-2, correction=0).numpy()


@torch.no_grad()
def evaluate(model: VAEStack, x: torch.Tensor, *, n_samples: int = 16, seed: int = 0) -> list[Evaluation]:
    """The true ELBO (``beta = 1``, real KL term) of every member on ``x``, averaged over the images.

    ``rate`` is the mean KL term (closed form, :func:`klcourse.vae_kl`, in float64); ``distortion`` the mean
    of ``-E_q[log p(x|z)]``, estimated with ``n_samples`` reparameterised draws per image.  Whatever a
    member was trained with (any beta, free bits, the MSE penalty), this is the bound it achieves.
    """
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = model.encode(x)
    draws = [reconstruction_nll(model, x, reparameterise(mu, logvar, gen)) for _ in range(n_samples)]
    distortion = torch.stack(draws).mean(dim=(0, 2)).double().numpy()
    kl_dims = kl_per_dim(mu.double(), logvar.double()).mean(dim=1).numpy()
    return [
        Evaluation(float(d), float(k.sum()), -float(d + k.sum()), k, active_units(k))
        for d, k in zip(distortion, kl_dims, strict=True)
    ]


# --------------------------------------------------------------------------- exact posterior of a 2-D model
@dataclass(frozen=True)
class GridPosterior:
    """``log p(x, z)`` on a square grid of ``z`` values for a 2-D latent model, and what follows from it.

    Attributes
    ----------
    axis : numpy.ndarray, shape (g,)
        Grid coordinates along each latent axis; ``cell`` is the area of one grid cell.
    log_joint : numpy.ndarray, shape (n, g, g)
        ``log p(x_i | z) + log p(z)`` at ``z = (axis[a], axis[b])`` (index ``[i, a, b]``).
    log_evidence : numpy.ndarray, shape (n,)
        ``log p(x_i) = log ∫ p(x_i, z) dz`` by the rectangle rule on the grid.
    """

    axis: np.ndarray
    cell: float
    log_joint: np.ndarray
    log_evidence: np.ndarray

    def log_posterior(self) -> np.ndarray:
        """``log p(z | x_i)`` on the grid, shape (n, g, g)."""
        return self.log_joint - self.log_evidence[:, None, None]

    def kl_from_gaussian(self, mu, logvar, *, log_evidence=None) -> np.ndarray:
        """``D(N(mu_i, diag exp(logvar_i)) || p(z | x_i))`` by quadrature on the grid, shape (n,).

        ``mu`` and ``logvar`` have shape (n, 2); ``q`` must be well resolved by the grid.  The posterior
        is ``p(x_i, z) / p(x_i)``, normalised with this grid's own ``log_evidence`` unless another
        estimate of ``log p(x_i)`` is given (shape (n,)), e.g. :func:`log_evidence_gh`.  With the grid's
        own normaliser ``log p(x) - ELBO - D`` does not depend on ``log p(x)`` at all, so checking that
        identity needs the second route.
        """
        za, zb = np.meshgrid(self.axis, self.axis, indexing="ij")
        mu, var = np.asarray(mu, dtype=float), np.exp(np.asarray(logvar, dtype=float))
        log_q = -0.5 * (((za[None] - mu[:, 0, None, None]) ** 2) / var[:, 0, None, None]
                        + ((zb[None] - mu[:, 1, None, None]) ** 2) / var[:, 1, None, None]
                        + np.log(4 * np.pi**2 * var[:, 0] * var[:, 1])[:, None, None])
        q = np.exp(log_q) * self.cell
        log_evidence = self.log_evidence if log_evidence is None else np.asarray(log_evidence, dtype=float)
        if log_evidence.shape != self.log_evidence.shape:
            raise ValueError(f"log_evidence has shape {log_evidence.shape}, expected {self.log_evidence.shape}")
        log_posterior = self.log_joint - log_evidence[:, None, None]
        return np.sum(q * (log_q - log_posterior), axis=(1, 2))

    def elbo(self, mu, logvar) -> np.ndarray:
        """``ELBO_i = E_q[log p(x_i, z) - log q(z)]`` for ``q = N(mu_i, diag exp(logvar_i))``, by the grid, (n,).

        The same integral as :meth:`kl_from_gaussian` without the normaliser: a route to the ELBO that uses
        neither the closed-form KL term nor a quadrature rule for the reconstruction term.
        """
        return -self.kl_from_gaussian(mu, logvar, log_evidence=np.zeros_like(self.log_evidence))


@torch.no_grad()
def grid_posterior(model: VAEStack, x: torch.Tensor, *, member: int = 0, half_width: float = 4.5,
                   n_grid: int = 301) -> GridPosterior:
    """Evaluate ``log p(x, z)`` of a 2-D latent, non-autoregressive member on a ``n_grid`` x ``n_grid`` grid.

    ``log p(x)`` follows by summing ``p(x, z)`` times the cell area (in log space, ``logsumexp``): an
    independent route to the evidence that the ELBO bounds.  The grid must cover the posterior mass and resolve
    it: with the defaults the prior mass outside the square is about 1.4e-5, and trained 2-D models have
    posterior widths of a few tenths, some ten grid cells.
    """
    if model.n_latent != 2 or bool(model.is_autoregressive[member]):
        raise ValueError("grid_posterior needs a member with a 2-D latent space and a plain decoder")
    axis = np.linspace(-half_width, half_width, n_grid)
    za, zb = np.meshgrid(axis, axis, indexing="ij")
    z = torch.tensor(np.stack([za.ravel(), zb.ravel()], axis=-1), dtype=torch.float32)
    logits = model.decoder(z.expand(model.n_models, *z.shape))[member].double()  # (g*g, 64)
    x = x.double()
    log_lik = x @ logits.T - F.softplus(logits).sum(dim=-1)  # Bernoulli: sum_i x_i l_i - log(1 + e^l_i)
    log_prior = -0.5 * (z.double() ** 2).sum(dim=-1) - math.log(2 * math.pi)
    log_joint = (log_lik + log_prior).reshape(len(x), n_grid, n_grid)
    cell = float((axis[1] - axis[0]) ** 2)
    log_evidence = torch.logsumexp(log_joint.reshape(len(x), -1), dim=-1) + math.log(cell)
    return GridPosterior(axis, cell, log_joint.numpy(), log_evidence.numpy())


@torch.no_grad()
def expected_log_likelihood_gh(model: VAEStack, x: torch.Tensor, mu, logvar, *, member: int = 0,
                               n_nodes: int = 40) -> np.ndarray:
    """``E_q[log p(x_i | z)]`` for ``q = N(mu_i, diag exp(logvar_i))`` by tensor Gauss–Hermite quadrature.

    With nodes ``t_k`` and weights ``w_k`` of :func:`numpy.polynomial.hermite.hermgauss`,
    ``E[g(Z)] ~ sum_k w_k g(mu + sqrt(2) sigma t_k) / sqrt(pi)`` per coordinate; the tensor rule needs
    ``n_nodes ** d`` decoder calls per image, so use it for small ``d`` (here 2).  A deterministic route
    to the reconstruction term, independent of the Monte Carlo estimate used in training.
    """
    t, w = np.polynomial.hermite.hermgauss(n_nodes)
    d = model.n_latent
    nodes = np.stack(np.meshgrid(*[t] * d, indexing="ij"), axis=-1).reshape(-1, d)
    weights = np.prod(np.stack(np.meshgrid(*[w] * d, indexing="ij"), axis=-1).reshape(-1, d), axis=-1)
    weights = torch.tensor(weights / np.pi ** (d / 2), dtype=torch.float64)
    mu, sigma = torch.as_tensor(mu, dtype=torch.float64), torch.exp(0.5 * torch.as_tensor(logvar, dtype=torch.float64))
    z = mu[:, None, :] + math.sqrt(2.0) * sigma[:, None, :] * torch.tensor(nodes)[None]  # (n, K, d)
    out = []
    for i in range(len(x)):
        zi = z[i].float().expand(model.n_models, -1, -1)
        xi = x[i].expand(len(nodes), -1)
        log_lik = -reconstruction_nll(model, xi, zi)[member].double()
        out.append(float(weights @ log_lik))
    return np.array(out)


@torch.no_grad()
def log_evidence_gh(model: VAEStack, x: torch.Tensor, mu, logvar, *, member: int = 0, n_nodes: int = 40,
                    widen: float = 1.5) -> np.ndarray:
    """``log p(x_i) = log ∫ p(x_i, z) dz`` by importance-weighted Gauss–Hermite quadrature, shape (n,).

    The proposal is ``r_i = N(mu_i, diag(widen**2 * exp(logvar_i)))`` -- the encoder's Gaussian widened
    ``widen`` times -- and ``p(x_i) = E_r[p(x_i, z) / r_i(z)]`` is evaluated with the tensor Gauss–Hermite
    rule of :func:`expected_log_likelihood_gh` (``n_nodes ** d`` decoder calls per image), in log space.
    A route to the evidence independent of :func:`grid_posterior`'s rectangle rule: different nodes,
    different weights, and nodes that follow each image's posterior instead of a fixed square.
    Needs a plain (non-autoregressive) decoder and a small ``d``.  The rule is exact for a Gaussian
    posterior and accurate when the posterior is smooth and close to Gaussian (as for trained models);
    for a rough, strongly non-Gaussian posterior compare it with the grid before trusting it.
    """
    if bool(model.is_autoregressive[member]):
        raise ValueError("log_evidence_gh needs a member with a plain decoder")
    t, w = np.polynomial.hermite.hermgauss(n_nodes)
    d = model.n_latent
    nodes = torch.tensor(np.stack(np.meshgrid(*[t] * d, indexing="ij"), axis=-1).reshape(-1, d))
    log_w = torch.tensor(np.log(np.prod(np.stack(np.meshgrid(*[w] * d, indexing="ij"), axis=-1)
                                        .reshape(-1, d), axis=-1)) - 0.5 * d * math.log(math.pi))
    mu = torch.as_tensor(mu, dtype=torch.float64)
    scale = widen * torch.exp(0.5 * torch.as_tensor(logvar, dtype=torch.float64))
    out = []
    for i in range(len(x)):
        z = mu[i] + math.sqrt(2.0) * scale[i] * nodes  # (K, d) nodes of the proposal r_i
        log_r = (-0.5 * nodes.pow(2).sum(-1) * 2.0 - torch.log(scale[i]).sum()
                 - 0.5 * d * math.log(2 * math.pi))  # ((z - mu) / scale)^2 = 2 t^2
        log_prior = -0.5 * z.pow(2).sum(-1) - 0.5 * d * math.log(2 * math.pi)
        xi = x[i].expand(len(nodes), -1)
        log_lik = -reconstruction_nll(model, xi, z.float().expand(model.n_models, -1, -1))[member].double()
        out.append(float(torch.logsumexp(log_w + log_lik + log_prior - log_r, dim=0)))
    return np.array(out)


@torch.no_grad()
def aggregate_posterior_kl(model: VAEStack, x: torch.Tensor, *, member: int = 0, n_samples: int = 1000,
                           seed: int = 0) -> tuple[float, float]:
    """Split the rate into information and prior mismatch: ``R = I_q(X; Z) + D(q(z) || p(z))``.

    ``q(z) = (1/N) sum_n q(z | x_n)`` is the aggregate posterior over the ``N`` images in ``x``.  Draws
    ``z ~ q(z)`` (pick an image, then ``z ~ q(z|x_n)``) give Monte Carlo estimates of
    ``D(q(z) || p(z)) = E[log q(z) - log p(z)]`` and ``I = E[log q(z|x_n) - log q(z)]`` (at most ``log N``).

    Returns
    -------
    (mismatch, information) : tuple of float
        Both in nats.  ``mismatch`` large means that samples from the prior land where the decoder was
        rarely trained.
    """
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = (t[member].double() for t in model.encode(x))
    pick = torch.randint(len(x), (n_samples,), generator=gen)
    z = reparameterise(mu[pick], logvar[pick], gen)
    # log q(z_s | x_n) for every draw s and image n, shape (n_samples, N); the squared distance
    # sum_j (z_j - mu_j)^2 / var_j expanded into matrix products (float64: the cancellation is harmless)
    precision = torch.exp(-logvar)
    squared = (z**2) @ precision.T - 2 * z @ (mu * precision).T + (mu**2 * precision).sum(dim=-1)
    log_q_all = -0.5 * (squared + logvar.sum(dim=-1) + mu.shape[-1] * math.log(2 * math.pi))
    log_aggregate = torch.logsumexp(log_q_all, dim=1) - math.log(len(x))
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(dim=-1)
    log_own = log_q_all[torch.arange(n_samples), pick]
    return float((log_aggregate - log_prior).mean()), float((log_own - log_aggregate).mean())


# --------------------------------------------------------------------------- display
def image_grid(images, n_cols: int, *, side: int = 8, pad: int = 1) -> np.ndarray:
    """Tile flattened ``side`` x ``side`` images into one 2-D array (``n_cols`` per row, NaN padding)."""
    images = np.asarray(images.detach() if hasattr(images, "detach") else images, dtype=float)
    images = images.reshape(-1, side, side)
    n_rows = -(-len(images) // n_cols)
    step = side + pad
    canvas = np.full((n_rows * step - pad, n_cols * step - pad), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, n_cols)
        canvas[r * step:r * step + side, c * step:c * step + side] = image
    return canvas


# --------------------------------------------------------------------------- importance weighting and the gap split
def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log(mean(exp(a)))`` along ``dim`` without overflow or underflow.

    Subtracts the maximum before exponentiating, ``m + log(mean(exp(a - m)))``, so log-weights of
    -10 000 or +10 000 nats give the right answer; an all ``-inf`` slice gives ``-inf``.

    Raises
    ------
    ValueError
        ``dim`` has length 0 (nothing to average), or ``a`` contains NaN or ``+inf``.
    """
    a = torch.as_tensor(a)
    if a.shape[dim] == 0:
        raise ValueError("log_mean_exp needs at least one value along dim")
    if bool(torch.isnan(a).any()) or bool((a == math.inf).any()):
        raise ValueError("log_mean_exp: the input contains NaN or +inf")
    m = a.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf slice stays -inf
    return (m + torch.log(torch.exp(a - m).mean(dim=dim, keepdim=True))).squeeze(dim)


def member_log_joint(model: VAEStack, x: torch.Tensor, *, member: int = 0):
    """``log p(x_i, z) = log p(x_i | z) + log p(z)`` of one plain member, as a function of ``z``, in float64.

    Returns a callable taking ``z`` of shape (..., n, d) (``n = len(x)``) and returning shape (..., n).
    It uses only the member's own weights (cast to float64), so importance sampling with thousands of
    draws does not pay for the other members of the stack.

    Raises
    ------
    ValueError
        ``member`` out of range or an autoregressive member.
    """
    if not 0 <= member < model.n_models:
        raise ValueError(f"member {member} is out of range for a stack of {model.n_models}")
    if bool(model.is_autoregressive[member]):
        raise ValueError("member_log_joint needs a member with a plain decoder")
    first, last = model.decoder[0], model.decoder[2]
    w1, b1 = first.weight[member].detach().double(), first.bias[member, 0].detach().double()
    w2, b2 = last.weight[member].detach().double(), last.bias[member, 0].detach().double()
    x = x.double()

    def log_joint(z: torch.Tensor) -> torch.Tensor:
        logits = torch.tanh(z @ w1 + b1) @ w2 + b2  # (..., n, pixels)
        log_lik = (x * logits - F.softplus(logits)).sum(dim=-1)  # Bernoulli, summed over pixels
        log_prior = -0.5 * (z**2).sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return log_lik + log_prior

    return log_joint


def _gaussian_draws(mu, logvar, shape, generator):
    mu, logvar = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(logvar, dtype=torch.float64)
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"mu and logvar must both have shape (n, d); got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    eps = torch.randn(*shape, *mu.shape, generator=generator, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q = (-0.5 * (eps**2 + logvar + math.log(2 * math.pi))).sum(dim=-1)
    return z, log_q


def iwae_bound(log_joint, mu, logvar, n_importance: int, *, n_repeats: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The importance-weighted bound of Burda et al. (2016) with ``K = n_importance`` draws from ``q``.

    .. math::

        \mathcal L_K(x) = \log\frac1K\sum_{k=1}^K \frac{p(x, z_k)}{q(z_k\mid x)},\qquad
        z_k\sim q(z\mid x) = \mathcal N(\mu, \operatorname{diag} e^{v}).

    Each value is one random draw of :math:`\mathcal L_K`; its expectation is at most ``log p(x)``, does
    not decrease with ``K``, equals the ELBO at ``K = 1`` and tends to ``log p(x)`` as ``K`` grows
    (when ``p(x, z) / q(z|x)`` has a finite variance, the gap falls like ``Var / (2 K p(x)^2)``).
    Averaged in log space with :func:`log_mean_exp`.

    Parameters
    ----------
    log_joint : callable
        ``z`` of shape (..., n, d) -> ``log p(x_i, z)`` of shape (..., n), e.g. :func:`member_log_joint`.
    mu, logvar : array_like, shape (n, d)
        The proposal ``q(z|x_i)``: means and log-variances.
    n_importance : int
        ``K >= 1``.
    n_repeats : int
        Independent draws of the bound.
    generator : torch.Generator, optional

    Returns
    -------
    torch.Tensor, shape (n_repeats, n), float64

    Raises
    ------
    ValueError
        ``K`` or ``n_repeats`` below 1, or ``mu``/``logvar`` not both of shape (n, d).
    """
    for name, value in (("n_importance", n_importance), ("n_repeats", n_repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    z, log_q = _gaussian_draws(mu, logvar, (n_repeats, n_importance), generator)
    with torch.no_grad():
        log_w = log_joint(z) - log_q  # (n_repeats, K, n)
    return log_mean_exp(log_w, dim=1)


def elbo_mc(log_joint, mu, logvar, n_samples: int = 1000, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo ELBO ``E_q[log p(x, z) - log q(z|x)]`` per image, shape (n,): the mean of ``n_samples``
    one-draw bounds (:func:`iwae_bound` with ``K = 1``)."""
    return iwae_bound(log_joint, mu, logvar, 1, n_repeats=n_samples, generator=generator).mean(dim=0)


def optimise_gaussian_q(log_joint, mu, logvar, *, steps: int = 300, n_samples: int = 16, lr: float = 0.02,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit one diagonal Gaussian ``q_i`` per image by maximising its own ELBO (no encoder): "optimal q".

    Stochastic gradient ascent (Adam, reparameterised draws, ``n_samples`` fresh draws per step) on
    ``E_q[log p(x_i, z) - log q_i(z)]`` over ``(mu_i, logvar_i)``, started from the given values (usually
    the encoder's).  A local, stochastic search: its ELBO is a lower bound on the best diagonal Gaussian's,
    so ``ELBO(q_opt) - ELBO(encoder)`` underestimates the amortisation gap (Cremer et al., 2018).

    Returns
    -------
    (mu, logvar) : tuple of torch.Tensor, shape (n, d), float64, detached

    Raises
    ------
    ValueError
        ``steps`` or ``n_samples`` below 1, ``lr`` not positive, bad shapes.
    """
    if steps < 1 or n_samples < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1, n_samples >= 1 and lr > 0; got {steps}, {n_samples}, {lr}")
    gen = torch.Generator().manual_seed(seed)
    mu = torch.as_tensor(mu, dtype=torch.float64).clone().requires_grad_()
    logvar = torch.as_tensor(logvar, dtype=torch.float64).clone().requires_grad_()
    _gaussian_draws(mu.detach(), logvar.detach(), (1,), gen)  # validates the shapes
    adam = _Adam([mu, logvar], lr=lr)
    for _ in range(steps):
        eps = torch.randn(n_samples, *mu.shape, generator=gen, dtype=torch.float64)
        z = mu + torch.exp(0.5 * logvar) * eps
        entropy = 0.5 * logvar.sum(dim=-1)  # + constant: the entropy of q_i
        loss = -(log_joint(z).mean(dim=0) + entropy).sum()
        adam.step(torch.autograd.grad(loss, (mu, logvar)))
    return mu.detach(), logvar.detach()


# --------------------------------------------------------------------------- the joint view and a Gaussian decoder
def empirical_log_mass(x) -> np.ndarray:
    """``log p_data(x_i)`` for the empirical distribution of the rows of ``x``: log(count of the row / n).

    Identical rows share their mass, so ``-mean(empirical_log_mass(x))`` is the entropy of the empirical
    distribution (``log n`` when all rows differ).

    Raises
    ------
    ValueError
        ``x`` not 2-D or empty.
    """
    x = np.asarray(x.detach() if hasattr(x, "detach") else x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (n, D) array of data points; got shape {x.shape}")
    _, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    return np.log(counts[inverse.ravel()] / len(x))


def gaussian_decoder_nll(x, mean, variance: float):
    """``-log N(x; mean, variance * I)`` per image, summed over the last (pixel) axis, in nats.

    ``= ||x - mean||^2 / (2 variance) + (D / 2) log(2 pi variance)``: a fixed-variance Gaussian decoder is a
    squared error weighted by ``1 / (2 variance)`` plus a constant, so its ELBO orders models like a
    beta-VAE with squared-error distortion and ``beta = 2 * variance``.  ``variance`` is ``s**2``, not ``s``.
    Works on NumPy arrays and (differentiably) on torch tensors.

    Raises
    ------
    ValueError
        ``variance`` not a positive finite number.
    """
    if not (isinstance(variance, (int, float)) and math.isfinite(variance) and variance > 0):
        raise ValueError(f"variance must be a positive number (s**2), got {variance!r}")
    squared = ((x - mean) ** 2).sum(-1)
    return squared / (2 * variance) + 0.5 * x.shape[-1] * math.log(2 * math.pi * variance)
