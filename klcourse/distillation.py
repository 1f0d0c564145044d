"""Knowledge distillation (chapter 8): the temperature-scaled KL loss of Hinton et al.

The student is trained to match the teacher's *softened* distribution
``p_t = softmax(teacher / T)`` with its own ``p_s = softmax(student / T)`` by minimising the
forward divergence ``D(p_t || p_s)`` (expectation under the teacher), multiplied by ``T**2``
so that its gradients keep the same scale as ``T`` changes (the gradient of the soft loss
w.r.t. a logit is ``(p_s - p_t) / T``, and it shrinks like ``1/T**2`` for large ``T``).

torch is imported lazily, inside the function: ``import klcourse`` never loads it.

References
----------
Hinton, G., Vinyals, O. & Dean, J. (2015). Distilling the knowledge in a neural network.
arXiv:1503.02531.
Cover, T. M. & Thomas, J. A. (2006). *Elements of Information Theory*, 2nd ed., Wiley, ch. 2.
"""

from __future__ import annotations

import math

__all__ = ["distillation_loss"]


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
    import torch

    temperature = _check_temperature(T)
    student = student_logits if torch.is_tensor(student_logits) else torch.as_tensor(student_logits)
    teacher = teacher_logits if torch.is_tensor(teacher_logits) else torch.as_tensor(teacher_logits)
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
