"""Chapter 8 library code (soft targets, the high-temperature limit, the student's objective, the MLP
ensemble and its training, calibration error, the digits split) against independent routes: scipy,
mpmath, finite differences, torch.nn.Linear-style models trained one by one, and ECE by hand."""

import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from scipy.stats import entropy

from klcourse import distillation_loss
from klcourse.distillation import (
    MLPEnsemble,
    distillation_objective,
    ece_from_confidence,
    expected_calibration_error,
    high_temperature_limit,
    load_digits_split,
    reliability_bins,
    softmax_with_temperature,
    train_classifier,
)


# --------------------------------------------------------------------------- soft targets
@pytest.mark.parametrize("T", [0.3, 1.0, 4.0, 50.0])
def test_softmax_with_temperature_matches_scipy(T):
    z = np.random.default_rng(0).normal(0, 5, size=(7, 9))
    assert np.allclose(softmax_with_temperature(z, T), softmax(z / T, axis=-1), rtol=1e-13, atol=0)
    assert np.allclose(softmax_with_temperature(z, T, axis=0), softmax(z / T, axis=0), rtol=1e-13, atol=0)


def test_softmax_with_temperature_torch_is_differentiable_and_stable():
    z = torch.tensor([[2000.0, 1990.0, 0.0]], dtype=torch.float64, requires_grad=True)
    p = softmax_with_temperature(z, 2.0)
    assert torch.is_tensor(p) and torch.isfinite(p).all()
    p[0, 1].backward()
    assert torch.isfinite(z.grad).all()
    big = softmax_with_temperature(np.array([2000.0, 1990.0, 0.0]), 2.0)
    assert np.all(np.isfinite(big)) and big[0] == pytest.approx(1 / (1 + math.exp(-5)), rel=1e-12)


def test_softmax_limits_in_temperature():
    z = np.array([3.0, 1.0, -2.0, 0.5])
    assert np.allclose(softmax_with_temperature(z, 1e-3), [1, 0, 0, 0], atol=1e-300)
    assert np.allclose(softmax_with_temperature(z, 1e8), 0.25, rtol=1e-7)


@pytest.mark.parametrize("T", [0, -1.0, float("inf"), float("nan")])
def test_softmax_with_temperature_rejects_bad_temperature(T):
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature([1.0, 2.0], T)


def test_softmax_with_temperature_rejects_nan_logits():
    with pytest.raises(ValueError, match="NaN"):
        softmax_with_temperature([1.0, float("nan")], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        softmax_with_temperature(torch.tensor([1.0, float("nan")]), 1.0)


@pytest.mark.parametrize("T", [0.5, 1.0, 3.0, 20.0])
def test_entropy_derivative_is_variance_over_t_cubed(T):
    """dH/dT = Var_p(z) / T^3 (the chapter's theorem) against a central finite difference."""
    z = np.array([4.0, 1.5, 0.0, -2.0, 3.0])

    def h(temp):
        return entropy(softmax(z / temp))

    step = 1e-5 * T
    numeric = (h(T + step) - h(T - step)) / (2 * step)
    p = softmax_with_temperature(z, T)
    variance = np.sum(p * z**2) - np.sum(p * z) ** 2
    assert numeric == pytest.approx(variance / T**3, rel=1e-6)


# --------------------------------------------------------------------------- the high-temperature limit
def t2_kl_mpmath(s, t, T, digits=60):
    with mpmath.workdps(digits):
        T = mpmath.mpf(T)
        es, et = [mpmath.exp(mpmath.mpf(v) / T) for v in s], [mpmath.exp(mpmath.mpf(v) / T) for v in t]
        ps, pt = [x / sum(es) for x in es], [x / sum(et) for x in et]
        return float(T**2 * sum(a * mpmath.log(a / b) for a, b in zip(pt, ps, strict=True)))


def test_high_temperature_limit_against_mpmath_and_distillation_loss():
    rng = np.random.default_rng(1)
    s, t = rng.normal(0, 2, size=(3, 6)), rng.normal(0, 3, size=(3, 6))
    limit = np.mean([t2_kl_mpmath(si, ti, 1e10) for si, ti in zip(s, t, strict=True)])
    assert high_temperature_limit(s, t) == pytest.approx(limit, rel=1e-8)
    # distillation_loss approaches it with an O(1/T) relative error
    errors = [abs(distillation_loss(torch.tensor(s), torch.tensor(t), T=T).item() / limit - 1)
              for T in (100, 1000, 10000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3
    assert errors[0] / errors[1] == pytest.approx(10, rel=0.1)


def test_high_temperature_limit_ignores_shifts_and_rejects_shape_mismatch():
    s, t = np.array([1.0, 2.0, 3.0]), np.array([0.0, 5.0, 1.0])
    assert high_temperature_limit(s + 7.0, t - 2.0) == pytest.approx(high_temperature_limit(s, t), rel=1e-14)
    assert high_temperature_limit(s, s + 1.0) == 0.0
    with pytest.raises(ValueError):
        high_temperature_limit(s, t[:2])


def test_gradient_scaling_with_and_without_t_squared():
    """Without T² the gradient wrt the student logits shrinks like 1/T²; with it, it tends to C(s - t)/(BK)."""
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 10, generator=gen, dtype=torch.float64), 3 * torch.randn(5, 10, generator=gen,
                                                                                    dtype=torch.float64)

    def grad_norm(T, scaled):
        x = s.clone().requires_grad_(True)
        loss = distillation_loss(x, t, T=T) / (1.0 if scaled else T**2)
        (g,) = torch.autograd.grad(loss, x)
        return g.norm().item()

    gap = (s - t) - (s - t).mean(dim=1, keepdim=True)
    predicted = gap.norm().item() / (s.shape[0] * s.shape[1])
    assert grad_norm(1e4, True) == pytest.approx(predicted, rel=1e-3)
    assert grad_norm(1e3, False) / grad_norm(2e3, False) == pytest.approx(4.0, rel=1e-2)
    assert grad_norm(1e3, True) / grad_norm(2e3, True) == pytest.approx(1.0, rel=1e-2)


# --------------------------------------------------------------------------- the student's objective
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_distillation_objective_against_kl_div_and_cross_entropy(alpha):
    gen = torch.Generator().manual_seed(2)
    s, t = torch.randn(8, 5, generator=gen, dtype=torch.float64), torch.randn(8, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=gen)
    T = 3.0
    soft = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T**2
    hard = -F.log_softmax(s, 1)[torch.arange(8), y].mean()
    expected = alpha * hard + (1 - alpha) * soft
    assert torch.allclose(distillation_objective(s, t, y, T=T, alpha=alpha), expected, rtol=1e-12)
    # leading axes are batch axes
    stacked = distillation_objective(s.reshape(2, 4, 5), t.reshape(2, 4, 5), y.reshape(2, 4), T=T, alpha=alpha)
    assert torch.allclose(stacked, expected, rtol=1e-12)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, True])
def test_distillation_objective_rejects_bad_alpha(alpha):
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="alpha"):
        distillation_objective(s, s, torch.zeros(2, dtype=torch.int64), T=2.0, alpha=alpha)


# --------------------------------------------------------------------------- the ensemble and its training
def reference_mlp(sizes, seed):
    """Model `seed` of the ensemble, rebuilt one by one as torch.nn.Linear layers with the same draws."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        bound = 1 / math.sqrt(fan_in)
        linear = torch.nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            linear.weight.copy_(((2 * torch.rand(fan_in, fan_out, generator=gen) - 1) * bound).T)
            linear.bias.copy_((2 * torch.rand(fan_out, generator=gen) - 1) * bound)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def toy_data():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 6, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def test_ensemble_models_equal_separately_built_models():
    sizes = (6, 7, 5, 3)
    ensemble = MLPEnsemble(sizes, n_models=3, seed=10)
    x, _ = toy_data()
    out = ensemble(x)
    assert out.shape == (3, 40, 3)
    assert ensemble.n_parameters == sum(p.numel() for p in reference_mlp(sizes, 0).parameters())
    for m in range(3):
        assert torch.allclose(out[m], reference_mlp(sizes, 10 + m)(x), rtol=1e-6, atol=1e-6)
    # a shared 2-D input takes a faster route than a per-model 3-D input: both give the same logits
    assert torch.allclose(ensemble(x.expand(3, *x.shape)), out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("distill", "weight_decay"), [(False, 0.0), (True, 0.0), (True, 0.05)])
def test_training_the_ensemble_equals_training_each_model_alone(distill, weight_decay):
    """train_classifier (its own Adam, its own route to the objective) against torch.optim.Adam on
    torch.nn.Linear models with F.cross_entropy and F.kl_div, one model at a time."""
    sizes, steps, lr, T, alpha = (6, 8, 3), 25, 0.02, 3.0, 0.4
    x, y = toy_data()
    teacher = 2 * torch.randn(40, 3, generator=torch.Generator().manual_seed(4)) if distill else None
    kwargs = dict(teacher_logits=teacher, T=T, alpha=alpha) if distill else {}
    ensemble = MLPEnsemble(sizes, n_models=2, seed=5)
    train_classifier(ensemble, x, y, steps=steps, lr=lr, weight_decay=weight_decay, **kwargs)
    for m in range(2):
        model = reference_mlp(sizes, 5 + m)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if distill:
                soft = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(teacher / T, 1), reduction="batchmean")
                loss = alpha * loss + (1 - alpha) * T**2 * soft
            loss.backward()
            optimizer.step()
        assert torch.allclose(ensemble(x)[m], model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("distill", [False, True])
def test_train_classifier_reports_distillation_objective(distill):
    """The history is distillation_objective (mean over the models) at the weights before each step."""
    x, y = toy_data()
    teacher = (3 * torch.randn(40, 3, generator=torch.Generator().manual_seed(6))).double() if distill else None
    T, alpha = (2.5, 0.3) if distill else (1.0, 1.0)
    ensemble = MLPEnsemble((6, 5, 3), n_models=3, seed=7)
    expected = []
    for _ in range(4):
        with torch.no_grad():
            logits = ensemble(x)
            target = logits if teacher is None else teacher.float().expand(3, -1, -1)
            expected.append(distillation_objective(logits, target, y.expand(3, -1), T=T, alpha=alpha).item())
        history = train_classifier(ensemble, x, y, teacher_logits=teacher, T=T, alpha=alpha, steps=1, lr=0.05)
        assert history.shape == (1,) and history[0] == pytest.approx(expected[-1], rel=1e-6)
    assert expected[-1] < expected[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_log_softmax_equals_torch_log_softmax(dtype):
    from klcourse.distillation import _log_softmax

    z = 30 * torch.randn(3, 50, 10, generator=torch.Generator().manual_seed(8), dtype=dtype)
    for logits in (z, z[0], z.transpose(0, 1)):
        assert torch.allclose(_log_softmax(logits), torch.log_softmax(logits, dim=-1), rtol=0, atol=1e-5)


def test_train_classifier_does_not_import_torch_dynamo():
    """Creating a torch.optim optimiser imports torch._dynamo (over a second of CPU in chapter 8)."""
    code = ("import sys, torch; from klcourse.distillation import MLPEnsemble, train_classifier; "
            "x = torch.randn(5, 2); train_classifier(MLPEnsemble((2, 3)), x, torch.zeros(5, dtype=torch.int64), "
            "teacher_logits=torch.randn(5, 3), alpha=0.5, steps=2); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_classifier_decreases_the_loss_and_validates():
    x, y = toy_data()
    ensemble = MLPEnsemble((6, 16, 3), n_models=2, seed=0)
    history = train_classifier(ensemble, x, y, steps=60, lr=0.03)
    assert history.shape == (60,) and history[-1] < 0.5 * history[0]
    with pytest.raises(ValueError, match="alpha"):
        train_classifier(ensemble, x, y, alpha=0.5, steps=1)
    teacher = torch.zeros(40, 3)
    with pytest.raises(ValueError, match="alpha"):
        train_classifier(ensemble, x, y, teacher_logits=teacher, alpha=1.5, steps=1)
    with pytest.raises(ValueError, match="temperature"):
        train_classifier(ensemble, x, y, teacher_logits=teacher, T=0.0, alpha=0.5, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        train_classifier(ensemble, x, y, teacher_logits=torch.full((40, 3), float("nan")), alpha=0.5, steps=1)
    with pytest.raises(ValueError):
        MLPEnsemble((6,), n_models=1)


def test_load_digits_split_is_stratified_standardised_and_deterministic():
    x_tr, x_te, y_tr, y_te = load_digits_split()
    assert x_tr.shape[1] == 64 and x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert x_tr.shape[0] + x_te.shape[0] == 1797 and abs(x_tr.shape[0] - x_te.shape[0]) <= 1
    assert torch.allclose(x_tr.mean(0), torch.zeros(64), atol=1e-5)
    assert np.allclose(np.bincount(y_tr.numpy()), np.bincount(y_te.numpy()), atol=1)
    again = load_digits_split()
    assert torch.equal(x_tr, again[0]) and torch.equal(y_te, again[3])


# --------------------------------------------------------------------------- calibration
def test_ece_against_a_hand_computation():
    # bins of width 1/4: (0, .25], (.25, .5], (.5, .75], (.75, 1]
    confidence = [0.9, 0.8, 0.6, 0.7, 0.55, 0.3]
    correct = [1, 0, 1, 1, 0, 1]
    # (.75,1]: {0.9 ✓, 0.8 ✗} conf .85 acc .5 -> gap .35, weight 2/6
    # (.5,.75]: {0.6 ✓, 0.7 ✓, 0.55 ✗} conf .6167 acc .6667 -> gap .05, weight 3/6
    # (.25,.5]: {0.3 ✓} conf .3 acc 1 -> gap .7, weight 1/6
    by_hand = 2 / 6 * 0.35 + 3 / 6 * (2 / 3 - 1.85 / 3) + 1 / 6 * 0.7
    assert ece_from_confidence(confidence, correct, n_bins=4) == pytest.approx(by_hand, rel=1e-12)
    counts, mean_conf, acc = reliability_bins(confidence, correct, n_bins=4)
    assert counts.tolist() == [0, 1, 3, 2] and np.isnan(mean_conf[0]) and acc[3] == 0.5


def test_ece_is_zero_when_calibrated_and_bins_include_their_right_edge():
    # within each bin, accuracy equals mean confidence exactly
    assert ece_from_confidence([0.5, 0.5, 1.0, 1.0], [1, 0, 1, 1], n_bins=10) == 0.0
    counts, _, _ = reliability_bins([0.5, 1.0, 0.1], [1, 1, 1], n_bins=2)
    assert counts.tolist() == [2, 1]  # 0.5 and 0.1 in (0, 0.5], 1.0 in (0.5, 1]


def test_expected_calibration_error_from_probabilities():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.05, 0.9, 0.05]])
    labels = np.array([0, 2, 2, 1])
    direct = ece_from_confidence([0.7, 0.6, 0.6, 0.9], [1, 0, 1, 1], n_bins=15)
    assert expected_calibration_error(probs, labels) == pytest.approx(direct, rel=1e-12)
    assert expected_calibration_error(torch.tensor(probs), torch.tensor(labels)) == pytest.approx(direct, rel=1e-12)
    with pytest.raises(ValueError):
        expected_calibration_error(probs, labels[:3])
    with pytest.raises(ValueError):
        ece_from_confidence([0.0, 0.5], [1, 1])
    with pytest.raises(ValueError):
        ece_from_confidence([0.5, 0.5], [1, 2])


def test_new_helpers_do_not_import_torch_with_klcourse():
    code = "import sys, klcourse, klcourse.distillation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_t_squared_does_not_make_the_balance_t_independent_at_moderate_temperature():
    """T² cancels exactly the 1/T² of the divergence's gradient; the rest still depends on T until T ≫ logit spread."""
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(16, 10, generator=gen, dtype=torch.float64)
    t = 10 * torch.randn(16, 10, generator=gen, dtype=torch.float64)  # a confident teacher: logits span ~30

    def grad_norm(T, scaled=True):
        x = s.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(distillation_loss(x, t, T=T) / (1.0 if scaled else T**2), x)
        return g.norm().item()

    with_t2 = grad_norm(8.0) / grad_norm(2.0)
    without = grad_norm(2.0, scaled=False) / grad_norm(8.0, scaled=False)
    assert with_t2 * without == pytest.approx(16.0, rel=1e-12)
    assert with_t2 > 1.5  # the soft gradient still grows between T = 2 and T = 8
    gap = (s - t) - (s - t).mean(dim=1, keepdim=True)
    limit = gap.norm().item() / (s.shape[0] * s.shape[1])
    assert grad_norm(1e4) / limit == pytest.approx(1.0, abs=1e-3)  # T-independent only for T ≫ logit spread
    x = s.clone().requires_grad_(True)
    (g8,) = torch.autograd.grad(distillation_loss(x, t, T=8.0), x)
    assert (g8 - gap / (s.shape[0] * s.shape[1])).norm() > 0.3 * limit  # at T = 8 not yet logit matching


# --------------------------------------------------------------------------- issue 14: three-way split
def test_load_digits_three_way_is_disjoint_stratified_and_deterministic():
    from sklearn.datasets import load_digits

    from klcourse.distillation import load_digits_three_way

    parts = load_digits_three_way(seed=3)
    assert set(parts) == {"teacher", "transfer", "test"}
    sizes = {name: len(y) for name, (_, y) in parts.items()}
    assert sizes == {"teacher": 599, "transfer": 599, "test": 599}
    # standardised with the statistics of the non-test images
    raw = load_digits()
    rest = np.concatenate([parts["teacher"][0].numpy(), parts["transfer"][0].numpy()])
    assert np.allclose(rest.mean(axis=0), 0, atol=1e-5)
    counts = {name: np.bincount(y.numpy(), minlength=10) for name, (_, y) in parts.items()}
    full = np.bincount(raw.target, minlength=10)
    for c in counts.values():  # stratified: each part holds a third of every class, up to one image
        assert np.all(np.abs(3 * c - full) <= 3)
    assert sum(counts.values()).sum() == 3 * 599
    # disjoint: no standardised image appears in two parts
    rows = {name: {tuple(np.round(x.numpy(), 4).tolist()) for x in xs} for name, (xs, _) in parts.items()}
    assert not (rows["teacher"] & rows["test"]) and not (rows["transfer"] & rows["test"])
    assert not (rows["teacher"] & rows["transfer"])
    again = load_digits_three_way(seed=3)
    assert all(torch.equal(parts[k][0], again[k][0]) for k in parts)
    assert not torch.equal(load_digits_three_way(seed=4)["test"][1], parts["test"][1])
    with pytest.raises(ValueError):
        load_digits_three_way(seed=1.5)


def test_train_classifier_with_one_training_set_per_model_equals_separate_runs():
    """Stacked inputs (n_models, N, d) and labels (n_models, N): model m is trained on set m only, the
    same as training it alone on its own 2-D data (independent route: separate calls)."""
    x, y = toy_data()
    x2 = torch.flip(x, dims=(0,)) + 0.3
    y2 = torch.flip(y, dims=(0,))
    xs, ys = torch.stack([x, x2]), torch.stack([y, y2])
    teacher = 2 * torch.randn(2, 40, 3, generator=torch.Generator().manual_seed(4))
    stacked = MLPEnsemble((6, 8, 3), n_models=2, seed=5)
    train_classifier(stacked, xs, ys, teacher_logits=teacher, T=2.0, alpha=0.3, steps=15, lr=0.02)
    for m, (xm, ym) in enumerate(((x, y), (x2, y2))):
        alone = MLPEnsemble((6, 8, 3), n_models=1, seed=5 + m)
        train_classifier(alone, xm, ym, teacher_logits=teacher[m], T=2.0, alpha=0.3, steps=15, lr=0.02)
        with torch.no_grad():
            assert torch.allclose(stacked(xm)[m], alone(xm)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="per-model labels"):
        train_classifier(stacked, x, ys, steps=1)


# --------------------------------------------------------------------------- issue 14: label smoothing
def test_smoothed_targets_put_epsilon_over_k_on_every_class():
    from klcourse.distillation import smoothed_targets

    q = smoothed_targets(np.array([2, 0]), 4, 0.2)
    # by hand: 0.2 / 4 = 0.05 everywhere, plus 0.8 on the label
    assert np.allclose(q, [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]], atol=1e-15)
    assert np.allclose(smoothed_targets(torch.tensor([1]), 3, 0.0), [[0, 1, 0]])
    for bad in (dict(labels=[4], n_classes=4, epsilon=0.1), dict(labels=[0], n_classes=1, epsilon=0.1),
                dict(labels=[0], n_classes=3, epsilon=1.5), dict(labels=[0.5], n_classes=3, epsilon=0.1),
                dict(labels=[0], n_classes=3, epsilon="a")):
        with pytest.raises(ValueError):
            smoothed_targets(np.asarray(bad.pop("labels")), **bad)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_loss_equals_torch_and_the_smoothed_cross_entropy(epsilon):
    """Three routes: torch's F.cross_entropy(label_smoothing=...), numpy's cross-entropy with explicit
    smoothed targets, and the library's distillation-from-a-uniform-teacher route."""
    from klcourse.distillation import label_smoothing_loss

    gen = torch.Generator().manual_seed(7)
    s = 3 * torch.randn(12, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (12,), generator=gen)
    ours = label_smoothing_loss(s, y, epsilon=epsilon).item()
    torch_value = F.cross_entropy(s, y, label_smoothing=epsilon).item()
    q = np.full((12, 10), epsilon / 10)
    q[np.arange(12), y.numpy()] += 1 - epsilon
    z = s.numpy()
    log_p = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    by_hand = float(np.mean(-(q * log_p).sum(1)))
    assert math.isclose(ours, torch_value, rel_tol=1e-12)
    assert math.isclose(ours, by_hand, rel_tol=1e-12)
    # and the KL form: (1 - eps) CE(y) + eps D(u || p_s) + eps log K, with scipy's entropy for D
    p = softmax(z, axis=1)
    kl_u = np.mean([entropy(np.full(10, 0.1), row) for row in p])
    ce = float(np.mean(-log_p[np.arange(12), y.numpy()]))
    assert math.isclose(ours, (1 - epsilon) * ce + epsilon * kl_u + epsilon * math.log(10), rel_tol=1e-12)


def test_label_smoothing_loss_gradient_matches_torch_and_validates():
    from klcourse.distillation import label_smoothing_loss

    s = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    (g_ours,) = torch.autograd.grad(label_smoothing_loss(s, y, epsilon=0.3), s)
    (g_torch,) = torch.autograd.grad(F.cross_entropy(s, y, label_smoothing=0.3), s)
    assert torch.allclose(g_ours, g_torch, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError):
        label_smoothing_loss(s, y, epsilon=-0.1)
    with pytest.raises(ValueError):
        label_smoothing_loss(s[0], y[:1], epsilon=0.1)


def test_training_with_a_uniform_teacher_is_label_smoothing():
    """train_classifier with all-zero teacher logits, T = 1, alpha = 1 - eps follows the same path as
    torch.optim.Adam on F.cross_entropy(label_smoothing=eps) (the constant eps log K has no gradient)."""
    x, y = toy_data()
    sizes, steps, lr, eps = (6, 8, 3), 20, 0.02, 0.2
    ensemble = MLPEnsemble(sizes, n_models=1, seed=5)
    train_classifier(ensemble, x, y, teacher_logits=torch.zeros(40, 3), T=1.0, alpha=1 - eps,
                     steps=steps, lr=lr)
    reference = MLPEnsemble(sizes, n_models=1, seed=5)
    params = reference.parameters()
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(reference(x)[0], y, label_smoothing=eps).backward()
        opt.step()
    with torch.no_grad():
        assert torch.allclose(ensemble(x), reference(x), rtol=1e-4, atol=1e-5)


def test_ensemble_with_a_seed_per_model_repeats_initial_weights():
    pairs = MLPEnsemble((4, 5, 3), n_models=4, seed=[7, 8, 7, 8])
    single = MLPEnsemble((4, 5, 3), n_models=2, seed=7)   # models with seeds 7 and 8
    for p_pairs, p_single in zip(pairs.parameters(), single.parameters(), strict=True):
        assert torch.equal(p_pairs[:2], p_single) and torch.equal(p_pairs[2:], p_single)
    with pytest.raises(ValueError, match="seeds"):
        MLPEnsemble((4, 5, 3), n_models=3, seed=[1, 2])
