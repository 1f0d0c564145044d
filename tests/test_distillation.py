"""klcourse.distillation_loss against torch.nn.functional.kl_div, a scipy/numpy computation,
the analytic gradient T (p_s - p_t) / B, and torch.autograd.gradcheck."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax, rel_entr, softmax

from klcourse import distillation_loss


def logits(shape, seed, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 8.0])
def test_matches_torch_kl_div_batchmean(T):
    student, teacher = logits((16, 10), 0), logits((16, 10), 1)
    # kl_div(input, target) = sum target * (log target - input): input is the *student's*
    # log-probabilities log p_s, target the teacher's (here also as logs, log_target=True).
    expected = F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1),
                        reduction="batchmean", log_target=True) * T**2
    assert torch.allclose(distillation_loss(student, teacher, T=T), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_matches_numpy_computation(T):
    student, teacher = logits((5, 7), 2).numpy(), logits((5, 7), 3).numpy()
    per_row = rel_entr(softmax(teacher / T, axis=1), softmax(student / T, axis=1)).sum(axis=1)
    expected = T**2 * per_row.mean()
    assert distillation_loss(student, teacher, T=T).item() == pytest.approx(expected, rel=1e-12)
    # extreme logits: the log-space computation stays finite where softmax underflows
    big = np.array([[800.0, 0.0, -800.0]])
    value = distillation_loss(big, big[:, ::-1].copy(), T=T)
    log_t, log_s = log_softmax(big[:, ::-1] / T, axis=1), log_softmax(big / T, axis=1)
    assert value.item() == pytest.approx(T**2 * np.sum(np.exp(log_t) * (log_t - log_s)), rel=1e-12)


def test_leading_axes_are_batch_axes():
    student, teacher = logits((3, 4, 6), 4), logits((3, 4, 6), 5)
    flat = distillation_loss(student.reshape(12, 6), teacher.reshape(12, 6), T=2.0)
    assert torch.allclose(distillation_loss(student, teacher, T=2.0), flat, rtol=1e-14)
    assert torch.allclose(distillation_loss(student[0, 0], teacher[0, 0], T=2.0),
                          distillation_loss(student[:1, 0], teacher[:1, 0], T=2.0), rtol=1e-14)


def test_zero_for_equal_logits_and_positive_otherwise():
    student = logits((8, 5), 6)
    assert distillation_loss(student, student + 3.0, T=2.0).abs().item() < 1e-14  # softmax is shift-invariant
    assert distillation_loss(student, logits((8, 5), 7), T=2.0).item() > 0


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_gradient_is_T_times_probability_gap_over_batch(T):
    student = logits((6, 4), 8).requires_grad_(True)
    teacher = logits((6, 4), 9)
    (grad,) = torch.autograd.grad(distillation_loss(student, teacher, T=T), student)
    expected = T * (torch.softmax(student.detach() / T, -1) - torch.softmax(teacher / T, -1)) / student.shape[0]
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-15)


def test_gradcheck_float64():
    student = logits((3, 5), 10).requires_grad_(True)
    teacher = logits((3, 5), 11)
    assert torch.autograd.gradcheck(lambda s: distillation_loss(s, teacher, T=2.5), (student,))


def test_float32_input_keeps_dtype():
    student, teacher = logits((4, 3), 12).float(), logits((4, 3), 13).float()
    assert distillation_loss(student, teacher, T=2.0).dtype == torch.float32


@pytest.mark.parametrize("T", [0, -1.0, float("nan"), float("inf"), True, "2", None])
def test_invalid_temperature(T):
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(logits((2, 3), 0), logits((2, 3), 1), T=T)


def test_bad_logits():
    with pytest.raises(ValueError, match="shape mismatch"):
        distillation_loss(logits((2, 3), 0), logits((2, 4), 1), T=1.0)
    with pytest.raises(ValueError, match="finite"):
        distillation_loss(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), T=1.0)
    with pytest.raises(ValueError, match="finite"):
        distillation_loss(torch.zeros(1, 2), torch.tensor([[0.0, -float("inf")]]), T=1.0)
    with pytest.raises(ValueError, match="class axis"):
        distillation_loss(torch.tensor(1.0), torch.tensor(1.0), T=1.0)


def test_importing_klcourse_does_not_load_torch():
    code = "import sys, klcourse; klcourse.kl_divergence([1.0], [1.0]); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
