"""vae_kl: accuracy against mpmath, agreement with kl_diag_normal / torch, autograd."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from klcourse import kl_diag_normal, vae_kl


def mp_vae_kl(mu_row, logvar_row):
    """0.5 * sum(e^v + mu^2 - 1 - v) with 60 significant digits on the exact float inputs."""
    with mp.workdps(60):
        terms = [
            mp.exp(mp.mpf(float(v))) + mp.mpf(float(m)) ** 2 - 1 - mp.mpf(float(v))
            for m, v in zip(mu_row, logvar_row, strict=True)
        ]
        return mp.fsum(terms) / 2


def stress_rows(rows=200, dim=6, seed=0):
    """Even rows: nearly collapsed units (|logvar| 1e-16..1e-4, |mu| 0 or 1e-12..1e-4);
    odd rows: logvar uniform in [-40, 40], |mu| 0 or 1e-12..1e2."""
    rng = np.random.default_rng(seed)
    shape = (rows, dim)
    sign = rng.choice([-1.0, 1.0], shape)
    on = rng.choice([0.0, 1.0], shape)
    logvar = rng.uniform(-40, 40, shape)
    mu = on * sign * 10 ** rng.uniform(-12, 2, shape)
    logvar[::2] = (sign * 10 ** rng.uniform(-16, -4, shape))[::2]
    mu[::2] = (on * sign * 10 ** rng.uniform(-12, -4, shape))[::2]
    return mu, logvar


def test_vae_kl_matches_mpmath_on_stress_rows():
    mu, logvar = stress_rows()
    values = vae_kl(mu, logvar)
    for value, m_row, v_row in zip(values, mu, logvar, strict=True):
        ref = float(mp_vae_kl(m_row, v_row))
        assert abs(value - ref) <= 1e-14 * ref
    assert np.all(values >= 0)


def test_stress_rows_defeat_the_textbook_formula():
    mu, logvar = stress_rows()
    naive = 0.5 * np.sum(np.exp(logvar) + mu**2 - 1 - logvar, axis=-1)
    ref = np.array([float(mp_vae_kl(m, v)) for m, v in zip(mu, logvar, strict=True)])
    assert np.max(np.abs(naive - ref) / ref) > 1e-3


def test_vae_kl_torch_float64_matches_mpmath_too():
    mu, logvar = stress_rows(rows=60)
    values = vae_kl(torch.from_numpy(mu), torch.from_numpy(logvar))
    assert values.dtype == torch.float64
    for value, m_row, v_row in zip(values.tolist(), mu, logvar, strict=True):
        ref = float(mp_vae_kl(m_row, v_row))
        assert abs(value - ref) <= 1e-14 * ref


def test_vae_kl_torch_float32_is_accurate_to_float32():
    mu, logvar = stress_rows(rows=60)
    logvar = np.clip(logvar, -30, 30)  # keep e^v inside the float32 range
    mu32, lv32 = torch.from_numpy(mu).float(), torch.from_numpy(logvar).float()
    values = vae_kl(mu32, lv32)
    assert values.dtype == torch.float32
    # reference on the float32-rounded inputs, in float64 through the (accurate) numpy path
    ref = vae_kl(mu32.double().numpy(), lv32.double().numpy())
    np.testing.assert_allclose(values.numpy(), ref, rtol=1e-6)


def test_vae_kl_equals_kl_diag_normal_against_standard_normal():
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(5, 7)), rng.normal(scale=2, size=(5, 7))
    expected = kl_diag_normal(mu, np.exp(logvar / 2), 0.0, 1.0)
    np.testing.assert_allclose(vae_kl(mu, logvar), expected, rtol=1e-13)


def test_vae_kl_matches_torch_distributions():
    rng = np.random.default_rng(2)
    mu, logvar = torch.from_numpy(rng.normal(size=(4, 3))), torch.from_numpy(rng.normal(size=(4, 3)))
    q = torch.distributions.Normal(mu, torch.exp(logvar / 2))
    prior = torch.distributions.Normal(torch.zeros(()), torch.ones(()).double())
    expected = torch.distributions.kl_divergence(q, prior).sum(-1)
    torch.testing.assert_close(vae_kl(mu, logvar), expected, rtol=1e-12, atol=0)


def test_vae_kl_matches_monte_carlo():
    rng = np.random.default_rng(3)
    mu, logvar = np.array([0.4, -1.0, 0.0]), np.array([-0.5, 0.3, 1.2])
    sd = np.exp(logvar / 2)
    z = mu + sd * rng.standard_normal((200_000, 3))
    log_ratio = np.sum(scipy.stats.norm.logpdf(z, mu, sd) - scipy.stats.norm.logpdf(z), axis=-1)
    se = log_ratio.std() / math.sqrt(len(z))
    assert abs(vae_kl(mu, logvar) - log_ratio.mean()) < 5 * se


def test_vae_kl_output_types_and_axis():
    mu, logvar = np.zeros((3, 4)), np.full((3, 4), 0.5)
    assert isinstance(vae_kl(mu[0], logvar[0]), float)
    assert vae_kl(mu, logvar).shape == (3,)
    assert vae_kl(mu, logvar, axis=0).shape == (4,)
    assert vae_kl(mu, 0.5).shape == (3,)  # logvar broadcasts
    mixed = vae_kl(torch.zeros(3, 4), logvar)  # a tensor anywhere -> tensor out
    assert isinstance(mixed, torch.Tensor) and mixed.dtype == torch.float32
    assert vae_kl(np.zeros(5), np.zeros(5)) == 0.0
    assert vae_kl(torch.zeros(5), torch.zeros(5)).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vae_kl_gradient_is_analytic(dtype):
    # both branches of the stable formula: |logvar| < 1 (series) and |logvar| >= 1 (expm1)
    mu = torch.tensor([0.0, 0.3, -2.0, 1e-8, 5.0, -0.7], dtype=dtype, requires_grad=True)
    logvar = torch.tensor([0.0, 1e-9, -0.99, 0.999, 1.0, -25.0], dtype=dtype, requires_grad=True)
    vae_kl(mu, logvar).backward()
    tol = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 0}
    torch.testing.assert_close(mu.grad, mu.detach(), **tol)
    torch.testing.assert_close(logvar.grad, 0.5 * torch.expm1(logvar.detach()), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vae_kl_gradients_stay_finite_for_extreme_logvar(dtype):
    logvar = torch.tensor([-80.0, -30.0, 0.0, 30.0, 80.0], dtype=dtype, requires_grad=True)
    mu = torch.zeros(5, dtype=dtype, requires_grad=True)
    value = vae_kl(mu, logvar)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logvar.grad).all() and torch.isfinite(mu.grad).all()


def test_vae_kl_passes_gradcheck():
    rng = np.random.default_rng(4)
    mu = torch.tensor(rng.normal(size=(3, 5)), requires_grad=True)
    logvar = torch.tensor(np.concatenate([rng.uniform(-0.9, 0.9, (3, 3)), rng.uniform(1.1, 3, (3, 2))], axis=1))
    logvar.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, v: vae_kl(m, v), (mu, logvar))
    assert torch.autograd.gradgradcheck(lambda m, v: vae_kl(m, v), (mu, logvar))


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float64, 4, elements=st.floats(-1e3, 1e3)),
    arrays(np.float64, 4, elements=st.floats(-50, 50)),
)
def test_vae_kl_properties(mu, logvar):
    value = vae_kl(mu, logvar)
    assert value >= 0
    if np.max(np.abs(logvar)) > 1e-150 or np.max(np.abs(mu)) > 1e-150:  # below that, squares underflow
        assert value > 0
    assert vae_kl(np.zeros(4), np.zeros(4)) == 0.0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.array([np.nan, 0.0]), np.zeros(2)), {}, "NaN"),
        ((np.zeros(2), np.array([0.0, np.inf])), {}, "inf"),
        ((torch.tensor([0.0, float("nan")]), torch.zeros(2)), {}, "NaN"),
        ((np.zeros(3), np.zeros(2)), {}, "shape mismatch"),
        ((torch.zeros(3), torch.zeros(2)), {}, "shape mismatch"),
        ((0.0, 0.0), {}, "at least 1-D"),
        ((np.zeros(3), np.zeros(3)), {"axis": 2}, "axis"),
    ],
)
def test_vae_kl_rejects_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        vae_kl(*args, **kwargs)
