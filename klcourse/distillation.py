"""Knowledge distillation (chapter 8): the temperature-scaled KL loss of Hinton et al.

The student is trained to match the teacher's *softened* distribution
``p_t = softmax(teacher / T)`` with its own ``p_s = softmax(student / T)`` by minimising the
forward divergence ``D(p_t || p_s)`` (expectation under the teacher), multiplied by ``T**2``.
The gradient of the divergence w.r.t. a student logit is ``(p_s - p_t) / T``; once ``T`` is large
compared with the spread of the logits it shrinks like ``1/T**2``, and the factor ``T**2`` makes
the gradient tend to a ``T``-independent limit (logit matching).  At moderate ``T`` (soft targets
still far from uniform) the scaled gradient still changes with ``T``: ``T**2`` removes the factor
``1/T**2``, not the change of the targets themselves.

torch is imported lazily, inside the function: ``import klcourse`` never loads it.

References
----------
Hinton, G., Vinyals, O. & Dean, J. (2015). Distilling the knowledge in a neural network.
arXiv:1503.02531.
Cover, T. M. & Thomas, J. A. (2006). *Elements of Information Theory*, 2nd ed., Wiley, ch. 2.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from klcourse._optional import require_torch

__all__ = [
    "MLPEnsemble",
    "distillation_loss",
    "distillation_objective",
    "ece_from_confidence",
    "expected_calibration_error",
    "high_temperature_limit",
    "label_smoothing_loss",
    "load_digits_split",
    "load_digits_three_way",
    "reliability_bins",
    "smoothed_targets",
    "softmax_with_temperature",
    "train_classifier",
]


def _check_temperature(T) -> float:
    """Return ``T`` as a float after checking it is a finite number > 0."""
    if isinstance(T, (bool, str, bytes)):
        raise ValueError(f"temperature T must be a positive number, got {T!r}")
    try:
        value = float(T)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"temperature T must be a positive number, got {T!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature T must be finite and > 0, got {T!r}")
    return value


def _as_logits(x, name: str):
    """A tensor of logits, or a ValueError naming the argument (strings, ragged lists …)."""
    import torch

    if torch.is_tensor(x):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be numeric logits (array-like or tensor), got {type(x).__name__}") from exc


def distillation_loss(student_logits, teacher_logits, *, T):
    r"""Distillation loss :math:`T^2\, \mathrm{mean}_{rows} D(\mathrm{softmax}(t/T) \| \mathrm{softmax}(s/T))`.

    Computed in log space: with ``log p_t = log_softmax(t/T)`` and
    ``log p_s = log_softmax(s/T)`` each row contributes
    ``sum_k p_t[k] (log p_t[k] - log p_s[k])`` (no ``log(0)``, no overflow), and the result is
    averaged over rows and multiplied by ``T**2``.  Equals
    ``torch.nn.functional.kl_div(log p_s, log p_t, log_target=True, reduction="batchmean") * T**2``
    for 2-D input.  Differentiable in the student logits (and the teacher's, if they require
    grad; detach the teacher for ordinary distillation).

    Parameters
    ----------
    student_logits : torch.Tensor or array_like, shape (..., n_classes)
        Unnormalised student scores; every leading axis is a batch axis.
    teacher_logits : torch.Tensor or array_like, same shape
        Unnormalised teacher scores.
    T : float
        Temperature > 0; ``T = 1`` is plain KL, larger ``T`` softens both distributions.

    Returns
    -------
    torch.Tensor
        0-d tensor, >= 0 (up to rounding), in nats.

    Raises
    ------
    ValueError
        ``T <= 0`` or not finite, shape mismatch, fewer than 1 dimension, non-finite logits
        (mask classes with a large negative number, not ``-inf``).

    References
    ----------
    Hinton, Vinyals & Dean (2015), sec. 2.
    """
    torch = require_torch("klcourse.distillation_loss")

    temperature = _check_temperature(T)
    student, teacher = (_as_logits(x, name) for x, name in ((student_logits, "student_logits"),
                                                             (teacher_logits, "teacher_logits")))
    if not student.is_floating_point():
        student = student.to(torch.get_default_dtype())
    teacher = teacher.to(dtype=student.dtype, device=student.device)
    if student.shape != teacher.shape:
        raise ValueError(
            f"shape mismatch: student_logits has shape {tuple(student.shape)}, "
            f"teacher_logits has shape {tuple(teacher.shape)}"
        )
    if student.dim() == 0 or student.shape[-1] == 0:
        raise ValueError("logits must have a non-empty class axis (shape (..., n_classes))")
    for tensor, name in ((student, "student_logits"), (teacher, "teacher_logits")):
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} contains NaN or inf; logits must be finite")
    log_p_s = torch.log_softmax(student / temperature, dim=-1)
    log_p_t = torch.log_softmax(teacher / temperature, dim=-1)
    per_row = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
    return per_row.mean() * temperature**2


# --------------------------------------------------------------------------- chapter 8: soft targets
def _is_torch(x) -> bool:
    """True for a torch tensor, without importing torch."""
    return type(x).__module__.split(".")[0] == "torch"


def softmax_with_temperature(logits, T, *, axis=-1):
    r"""Soft targets :math:`p_k = e^{z_k/T} / \sum_j e^{z_j/T}` along ``axis``.

    Computed as ``exp(z/T - max(z/T))`` divided by its sum, so large logits do not overflow.
    ``T = 1`` is the ordinary softmax; ``T -> 0`` tends to a one-hot vector on the arg max,
    ``T -> inf`` to the uniform distribution.

    Parameters
    ----------
    logits : array_like or torch.Tensor
        Unnormalised scores; ``axis`` holds the classes, other axes are a batch.
    T : float
        Temperature > 0.
    axis : int, optional
        Class axis (default last).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape as ``logits``; a torch tensor (differentiable) for torch input, else float64.

    Raises
    ------
    ValueError
        ``T <= 0`` or not finite, NaN/inf logits, empty class axis.

    References
    ----------
    Hinton, Vinyals & Dean (2015), eq. (1).
    """
    temperature = _check_temperature(T)
    if _is_torch(logits):
        import torch

        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits contains NaN or inf; logits must be finite")
        return torch.softmax(logits / temperature, dim=axis)
    from klcourse._validate import as_float_array

    z = as_float_array(logits, "logits")
    if z.ndim == 0 or z.shape[axis] == 0:
        raise ValueError("logits must have a non-empty class axis")
    scaled = z / temperature
    shifted = np.exp(scaled - scaled.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def high_temperature_limit(student_logits, teacher_logits) -> float:
    r"""The limit of ``distillation_loss`` as :math:`T \to \infty`: half a mean squared logit gap.

    .. math::
        \lim_{T\to\infty} T^2 D\big(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T)\big)
        = \frac{1}{2K}\sum_{k=1}^K \big((s_k - \bar s) - (t_k - \bar t)\big)^2 ,

    with :math:`\bar s, \bar t` the means over the :math:`K` classes (logits are defined up to a
    shift, so only centred logits matter); averaged over the rows of a batch like
    :func:`distillation_loss`.  Derivation: expand :math:`\log p_k = -\log K + (z_k-\bar z)/T -
    \mathrm{Var}(z)/(2T^2) + O(T^{-3})` for both distributions.

    Parameters
    ----------
    student_logits, teacher_logits : array_like, same shape (..., K)

    Returns
    -------
    float
        In nats.

    References
    ----------
    Hinton, Vinyals & Dean (2015), sec. 2.1 (matching logits is a special case of distillation).
    """
    from klcourse._validate import as_float_array

    s = as_float_array(student_logits, "student_logits")
    t = as_float_array(teacher_logits, "teacher_logits")
    if s.shape != t.shape or s.ndim == 0:
        raise ValueError(f"shape mismatch or scalar input: student {s.shape}, teacher {t.shape}")
    gap = s - t
    gap = gap - gap.mean(axis=-1, keepdims=True)
    per_row = np.sum(gap**2, axis=-1) / (2 * gap.shape[-1])
    return float(np.mean(per_row))


def distillation_objective(student_logits, teacher_logits, labels, *, T, alpha):
    r"""The student's training loss :math:`\alpha\,\mathrm{CE}(y, s) + (1-\alpha)\,T^2 D(p_t^T \| p_s^T)`.

    The cross-entropy with the hard labels uses the student's logits at temperature 1; the second
    term is :func:`distillation_loss` (which already contains the :math:`T^2`).  Both terms are
    means over the rows of the batch (every leading axis of the logits is a batch axis).

    Parameters
    ----------
    student_logits, teacher_logits : torch.Tensor, shape (..., K)
    labels : torch.Tensor of int64, shape (...)
        Class indices.
    T : float
        Temperature > 0.
    alpha : float in [0, 1]
        Weight of the hard-label term: 1 is ordinary training, 0 pure distillation.

    Returns
    -------
    torch.Tensor
        0-d, in nats.

    References
    ----------
    Hinton, Vinyals & Dean (2015), sec. 2.
    """
    import torch.nn.functional as F

    if isinstance(alpha, bool) or not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    hard = F.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]), labels.reshape(-1))
    if alpha == 1:
        return hard
    return alpha * hard + (1 - alpha) * distillation_loss(student_logits, teacher_logits, T=T)


# --------------------------------------------------------------------------- chapter 8: models, training
class MLPEnsemble:
    """``n_models`` independent ReLU networks with the same layer sizes, evaluated side by side.

    Model ``m`` is initialised from ``torch.Generator().manual_seed(seed + m)`` with the default
    initialisation of ``torch.nn.Linear`` (weights and biases uniform on
    :math:`\\pm 1/\\sqrt{\\text{fan-in}}`).  Stacking the models turns many small matrix products into
    a few batched ones; since the training loss is a *sum* of per-model losses and Adam updates each
    parameter on its own, training the stack is the same as training each model separately (a test
    checks this), only faster.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(64, 8, 10)``: 64 inputs, one hidden layer of 8
        units, 10 logits.
    n_models : int
        Number of independent models.
    seed : int or sequence of int
        Seed of model 0 (model ``m`` gets ``seed + m``), or one seed per model: a sequence of
        ``n_models`` seeds, e.g. ``[1, 2, 1, 2]`` for two pairs of identically initialised models.

    Calling the ensemble on inputs of shape ``(N, sizes[0])`` returns logits of shape
    ``(n_models, N, sizes[-1])``.
    """

    def __init__(self, sizes, n_models: int = 1, *, seed: int = 0):
        import torch

        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1 or int(n_models) < 1:
            raise ValueError(f"need >= 2 positive layer sizes and n_models >= 1, got {sizes}, {n_models}")
        if np.ndim(seed) == 0:
            seeds = [int(seed) + m for m in range(int(n_models))]
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != int(n_models):
                raise ValueError(f"got {len(seeds)} seeds for n_models = {n_models}")
        self.sizes, self.n_models = sizes, int(n_models)
        layers = [[] for _ in sizes[1:]]
        for m in range(self.n_models):
            gen = torch.Generator().manual_seed(seeds[m])
            for layer, fan_in, fan_out in zip(layers, sizes[:-1], sizes[1:], strict=True):
                bound = 1.0 / math.sqrt(fan_in)
                w = (2 * torch.rand(fan_in, fan_out, generator=gen) - 1) * bound
                b = (2 * torch.rand(fan_out, generator=gen) - 1) * bound
                layer.append((w, b))
        self.weights = [torch.stack([w for w, _ in layer]).requires_grad_(True) for layer in layers]
        self.biases = [torch.stack([b for _, b in layer])[:, None, :].requires_grad_(True) for layer in layers]

    def parameters(self) -> list:
        return [*self.weights, *self.biases]

    @property
    def n_parameters(self) -> int:
        """Number of parameters of one model."""
        return sum(p[0].numel() for p in self.parameters())

    def __call__(self, x):
        w, b = self.weights[0], self.biases[0]
        if x.dim() == 2:
            # the models share their input: one (N, d) x (d, n_models * width) product instead of a
            # batched one that broadcasts x, then back to the layout (n_models, N, width)
            n, d, width = w.shape
            h = (x @ w.transpose(0, 1).reshape(d, n * width)).view(x.shape[0], n, width)
            h = h.transpose(0, 1).contiguous() + b
        else:
            h = x @ w + b
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h = h.relu() @ w + b
        return h


def train_classifier(model, x, y, *, teacher_logits=None, T: float = 1.0, alpha: float = 1.0,
                     steps: int = 300, lr: float = 1e-2, weight_decay: float = 0.0) -> np.ndarray:
    r"""Full-batch Adam on :func:`distillation_objective`, for every model of an :class:`MLPEnsemble`.

    Without ``teacher_logits`` this is ordinary training on the hard labels (``alpha`` must be 1).
    The loss minimised is the sum over the models of each model's objective, so the models do not
    interact.  For speed the objective is evaluated by an equivalent route (inputs checked once, the
    teacher's soft targets computed once, a faster memory layout for the log-softmax) and Adam is
    written out; tests check both against :func:`distillation_objective` and ``torch.optim.Adam``.

    Parameters
    ----------
    model : MLPEnsemble
    x : torch.Tensor, shape (N, d) or (n_models, N, d)
        Shared inputs, or one training set per model (all of the same size N).
    y : torch.Tensor of int64, shape (N,) or (n_models, N)
        Labels, shared or one row per model (matching ``x``).
    teacher_logits : torch.Tensor, shape (N, K) or (n_models, N, K), optional
        The teacher's logits on ``x`` (computed once, without gradient; cast to the model's dtype).
        All zeros is a uniform teacher: with ``T = 1`` and ``alpha = 1 - epsilon`` the objective is
        then label smoothing minus the constant ``epsilon * log K`` (see :func:`label_smoothing_loss`).
    T, alpha : float
        Temperature and hard-label weight of :func:`distillation_objective`.
    steps, lr, weight_decay : Adam's number of full-batch steps, step size and L2 penalty.

    Returns
    -------
    numpy.ndarray, shape (steps,)
        The objective averaged over the models, before each step (nats).
    """
    import torch

    if teacher_logits is None and alpha != 1:
        raise ValueError("without teacher_logits only alpha = 1 (hard labels) is possible")
    if isinstance(alpha, bool) or not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    n = model.n_models
    dtype = model.weights[0].dtype
    if y.dim() == 2 and (y.shape[0] != n or x.dim() != 3 or x.shape[:2] != y.shape):
        raise ValueError(f"per-model labels of shape {tuple(y.shape)} need inputs of shape "
                         f"({n}, {y.shape[-1]}, d), got {tuple(x.shape)}")
    # the same objective as distillation_objective, by a faster route (a test checks they agree):
    # the inputs are checked once, not at every step; the teacher's soft targets are computed once;
    # _log_softmax avoids torch.log_softmax's slow CPU path for a short last axis
    index = y[..., None] if y.dim() == 2 else y.reshape(1, -1, 1).expand(n, -1, 1)
    distil = teacher_logits is not None and alpha != 1
    if distil:
        temperature = _check_temperature(T)
        teacher = _as_logits(teacher_logits, "teacher_logits").detach().to(dtype)
        if not bool(torch.isfinite(teacher).all()):
            raise ValueError("teacher_logits contains NaN or inf; logits must be finite")
        log_p_t = _log_softmax(teacher / temperature)
        p_t = log_p_t.exp()
    adam = _Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = np.empty(int(steps))
    for step in range(int(steps)):
        logits = model(x)
        loss = -_log_softmax(logits).gather(-1, index).mean()  # cross-entropy with the labels
        if distil:
            soft = (p_t * (log_p_t - _log_softmax(logits / temperature))).sum(-1).mean()
            loss = alpha * loss + (1 - alpha) * soft * temperature**2
        grads = torch.autograd.grad(loss * n, adam.params)  # sum over models of per-model means
        adam.step(grads)
        history[step] = loss.item()
    return history


class _Adam:
    """Adam (Kingma & Ba, 2015) with the defaults and update order of ``torch.optim.Adam``.

    Written out because creating a ``torch.optim`` optimiser imports ``torch._dynamo`` (over a
    second of CPU); a test checks that training with it equals training with ``torch.optim.Adam``.
    """

    def __init__(self, params, *, lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        import torch

        self.params, self.lr, self.weight_decay = list(params), float(lr), float(weight_decay)
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def step(self, grads) -> None:
        import torch

        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - beta1**self.t)
        root_correction = math.sqrt(1 - beta2**self.t)
        with torch.no_grad():
            for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
                if self.weight_decay:
                    g = g.add(p, alpha=self.weight_decay)
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.addcdiv_(m, (v.sqrt() / root_correction).add_(self.eps), value=-step_size)


def _log_softmax(z):
    """``torch.log_softmax`` along the last axis, computed on a copy with the classes on axis -2.

    The same numbers; on CPU torch's kernel is several times faster when the reduced axis is not
    the last one and the class axis is short (10 classes, thousands of rows).
    """
    import torch

    return torch.log_softmax(z.transpose(-1, -2).contiguous(), dim=-2).transpose(-1, -2)


def load_digits_split(*, test_size: float = 0.5, seed: int = 0):
    """scikit-learn's 8x8 digits (1797 images, 10 classes), split and standardised.

    A stratified split with ``random_state=seed``; each pixel is standardised with the *training*
    mean and standard deviation (pixels that are constant in the training set are only centred).
    The data ship with scikit-learn: nothing is downloaded.

    Returns
    -------
    x_train, x_test : torch.Tensor, float32, shape (n, 64)
    y_train, y_test : torch.Tensor, int64
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(digits.data, digits.target, test_size=test_size,
                                              stratify=digits.target, random_state=seed)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0
    x_tr, x_te = ((x - mean) / std for x in (x_tr, x_te))
    return (torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_te, dtype=torch.float32),
            torch.tensor(y_tr, dtype=torch.int64), torch.tensor(y_te, dtype=torch.int64))


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    """scikit-learn's digits (images as rows, labels), read once per process; read-only arrays."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    data, target = digits.data, digits.target
    data.flags.writeable = target.flags.writeable = False
    return data, target


def load_digits_three_way(*, seed: int = 0):
    """scikit-learn's digits split three ways, stratified: teacher's training set, transfer set, test set.

    The 1797 images are divided into three stratified parts of 599 images each, with
    ``random_state=seed``: the teacher is trained on the first, a student may be distilled on the
    first (the teacher's own training set) or on the second (a *held-out transfer set* the teacher
    never saw), and all are evaluated on the third.  Pixels are standardised with the mean and
    standard deviation of the first two parts together (everything but the test set), so neither
    transfer set is favoured.

    Parameters
    ----------
    seed : int
        Seed of the split.

    Returns
    -------
    dict
        ``{"teacher": (x, y), "transfer": (x, y), "test": (x, y)}`` with ``x`` a float32 tensor of
        shape (599, 64) and ``y`` an int64 tensor of shape (599,).
    """
    import torch
    from sklearn.model_selection import train_test_split

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    data, target = _digits_arrays()
    n = len(target)
    x_rest, x_te, y_rest, y_te = train_test_split(data, target, test_size=n // 3,
                                                  stratify=target, random_state=int(seed))
    x_a, x_b, y_a, y_b = train_test_split(x_rest, y_rest, test_size=n // 3, stratify=y_rest,
                                          random_state=int(seed))
    mean, std = x_rest.mean(axis=0), x_rest.std(axis=0)
    std[std == 0] = 1.0

    def pair(x, y):
        return (torch.tensor((x - mean) / std, dtype=torch.float32), torch.tensor(y, dtype=torch.int64))

    return {"teacher": pair(x_a, y_a), "transfer": pair(x_b, y_b), "test": pair(x_te, y_te)}


# --------------------------------------------------------------------------- chapter 8: label smoothing
def _check_epsilon(epsilon) -> float:
    if isinstance(epsilon, (bool, str, bytes)):
        raise ValueError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
    try:
        value = float(epsilon)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"epsilon must be a number in [0, 1], got {epsilon!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
    return value


def smoothed_targets(labels, n_classes: int, epsilon: float) -> np.ndarray:
    r"""Label-smoothing targets :math:`q = (1-\varepsilon)\,\mathrm{onehot}(y) + \varepsilon/K`.

    Every class, the true one included, receives :math:`\varepsilon/K`; the true class gets
    :math:`1-\varepsilon+\varepsilon/K` in all.  This is the convention of Szegedy et al. (2016),
    Müller, Kornblith & Hinton (2019) and ``torch.nn.functional.cross_entropy(label_smoothing=...)``.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Class indices in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes K >= 2.
    epsilon : float in [0, 1]
        Smoothing weight.

    Returns
    -------
    numpy.ndarray, shape (N, K)
        Rows sum to 1.
    """
    eps = _check_epsilon(epsilon)
    if _is_torch(labels):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if isinstance(n_classes, bool) or int(n_classes) != n_classes or int(n_classes) < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    k = int(n_classes)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or np.any((y < 0) | (y >= k)):
        raise ValueError(f"labels must be a 1-D array of integers in [0, {k - 1}]")
    q = np.full((y.size, k), eps / k)
    q[np.arange(y.size), y] += 1.0 - eps
    return q


def label_smoothing_loss(student_logits, labels, *, epsilon):
    r"""Label smoothing written as distillation from a uniform teacher.

    The cross-entropy with the smoothed targets :func:`smoothed_targets` splits as

    .. math::
        H(q_\varepsilon, p_s) = (1-\varepsilon)\,\mathrm{CE}(y, p_s) + \varepsilon\, H(u, p_s)
        = (1-\varepsilon)\,\mathrm{CE}(y, p_s) + \varepsilon\, D(u\,\|\,p_s) + \varepsilon \log K ,

    with :math:`u` the uniform distribution over the K classes: the objective of
    :func:`distillation_objective` with a teacher whose logits are all equal, ``T = 1`` and
    ``alpha = 1 - epsilon``, plus the constant :math:`\varepsilon\log K`.  It is computed by exactly
    that route; it equals ``F.cross_entropy(s, y, label_smoothing=epsilon)`` (a test checks).

    Parameters
    ----------
    student_logits : torch.Tensor, shape (N, K)
    labels : torch.Tensor of int64, shape (N,)
    epsilon : float in [0, 1]

    Returns
    -------
    torch.Tensor
        0-d, the mean over the rows, in nats.

    References
    ----------
    Müller, Kornblith & Hinton (2019), sec. 2; Szegedy et al. (2016), sec. 7.
    """
    import torch

    eps = _check_epsilon(epsilon)
    s = _as_logits(student_logits, "student_logits")
    if s.dim() != 2 or s.shape[-1] < 2:
        raise ValueError(f"student_logits must have shape (N, K) with K >= 2, got {tuple(s.shape)}")
    uniform_teacher = torch.zeros_like(s)
    return (distillation_objective(s, uniform_teacher, labels, T=1.0, alpha=1.0 - eps)
            + eps * math.log(s.shape[-1]))


# --------------------------------------------------------------------------- chapter 8: calibration
def reliability_bins(confidence, correct, *, n_bins: int = 15):
    r"""Group predictions into ``n_bins`` equal-width confidence bins :math:`((m-1)/M, m/M]`.

    Parameters
    ----------
    confidence : array_like, shape (N,)
        The probability each prediction was made with (the largest class probability), in (0, 1].
    correct : array_like of bool or {0, 1}, shape (N,)
        Whether each prediction was right.
    n_bins : int
        Number of bins M.

    Returns
    -------
    counts, mean_confidence, accuracy : numpy.ndarray, shape (n_bins,)
        Per bin; the means are NaN for an empty bin.

    References
    ----------
    Guo, Pleiss, Sun & Weinberger (2017), sec. 2.
    """
    from klcourse._validate import as_float_array

    conf = as_float_array(confidence, "confidence").ravel()
    hit = as_float_array(correct, "correct").ravel()
    if conf.shape != hit.shape or conf.size == 0:
        raise ValueError(f"confidence and correct must be non-empty and of equal length, got {conf.size}, {hit.size}")
    if np.any((conf <= 0) | (conf > 1)):
        raise ValueError("confidence must lie in (0, 1]")
    if not np.all((hit == 0) | (hit == 1)):
        raise ValueError("correct must contain only 0/1 or booleans")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    index = np.clip(np.digitize(conf, edges, right=True) - 1, 0, int(n_bins) - 1)
    counts = np.bincount(index, minlength=int(n_bins)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=int(n_bins)) / counts
        accuracy = np.bincount(index, weights=hit, minlength=int(n_bins)) / counts
    return counts, mean_conf, accuracy


def ece_from_confidence(confidence, correct, *, n_bins: int = 15) -> float:
    r"""Expected calibration error :math:`\sum_m \frac{n_m}{N}\,\lvert \mathrm{acc}_m - \mathrm{conf}_m\rvert`.

    See :func:`reliability_bins` for the bins; empty bins contribute 0.  0 means perfectly
    calibrated on these bins; the value is a probability gap (no unit).

    References
    ----------
    Naeini, Cooper & Hauskrecht (2015); Guo, Pleiss, Sun & Weinberger (2017), eq. (3).
    """
    counts, mean_conf, accuracy = reliability_bins(confidence, correct, n_bins=n_bins)
    used = counts > 0
    return float(np.sum(counts[used] / counts.sum() * np.abs(accuracy[used] - mean_conf[used])))


def expected_calibration_error(probs, labels, *, n_bins: int = 15) -> float:
    """ECE of class probabilities ``probs`` (shape (N, K)) against integer ``labels`` (shape (N,)).

    The confidence of a prediction is its largest probability; it is correct when its arg max equals
    the label.  See :func:`ece_from_confidence`.
    """
    if _is_torch(probs):
        probs = probs.detach().cpu().numpy()
    if _is_torch(labels):
        labels = labels.detach().cpu().numpy()
    from klcourse._validate import probability_array

    p = probability_array(probs, "probs")
    y = np.asarray(labels)
    if p.ndim != 2 or y.shape != p.shape[:1]:
        raise ValueError(f"probs must have shape (N, K) and labels shape (N,), got {p.shape}, {y.shape}")
    return ece_from_confidence(p.max(axis=1), p.argmax(axis=1) == y, n_bins=n_bins)
