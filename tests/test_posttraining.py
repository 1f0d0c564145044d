"""klcourse.posttraining against routes written here: token-by-token enumeration, torch autograd, finite
differences, scipy's optimiser and the Bradley-Terry likelihood."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax

from klcourse import posttraining as pt

V, T = 3, 4


def brute_log_probs(model):
    """log pi(x) of every sequence, token by token with the context worked out here."""
    table = log_softmax(model.logits, axis=1)
    out = []
    for seq in itertools.product(range(V), repeat=T):
        total = 0.0
        for t, tok in enumerate(seq):
            if model.kind == "prefix":
                code = 0
                for x in seq[:t]:
                    code = code * V + x
                ctx = (V**t - 1) // (V - 1) + code
            elif model.kind == "bigram":
                ctx = V if t == 0 else seq[t - 1]
            elif model.kind == "position":
                ctx = t
            else:
                ctx = 0
            total += table[ctx, tok]
        out.append(total)
    return np.array(out)


@pytest.fixture(scope="module")
def pair():
    ref = pt.TinyLM.random(V, T, "bigram", scale=0.8, seed=1)
    policy = pt.TinyLM.random(V, T, "prefix", scale=0.6, seed=2)
    return policy, ref


def torch_kl(theta, ref, direction):
    """D(pi_theta || pi_ref) or D(pi_ref || pi_theta) from logits, enumerated in torch."""
    model = pt.TinyLM.uniform(V, T, "prefix")
    ctx = torch.as_tensor(np.array(model.contexts()))
    seqs = torch.as_tensor(np.array(model.sequences()))
    lp = torch.log_softmax(theta, dim=-1)[ctx, seqs].sum(dim=1)
    lref = torch.as_tensor(ref.log_probs())
    if direction == "reverse":
        return torch.sum(lp.exp() * (lp - lref))
    return torch.sum(lref.exp() * (lref - lp))


def torch_grad(policy, ref, direction):
    theta = torch.tensor(policy.logits, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(torch_kl(theta, ref, direction), theta)
    return g.numpy().ravel()


@pytest.mark.parametrize("kind", pt.CONTEXTS)
def test_log_probs_match_token_by_token_enumeration(kind):
    model = pt.TinyLM.random(V, T, kind, seed=3)
    assert np.allclose(model.log_probs(), brute_log_probs(model))
    assert math.isclose(model.probs().sum(), 1.0, rel_tol=1e-12)
    assert np.allclose(model.as_prefix().log_probs(), model.log_probs())


def test_chain_rule_sequence_kl_is_sum_of_token_kls(pair):
    policy, ref = pair
    lp, lq = brute_log_probs(policy), brute_log_probs(ref)
    direct = float(np.sum(np.exp(lp) * (lp - lq)))
    assert math.isclose(pt.sequence_kl(policy, ref), direct, rel_tol=1e-10)
    assert math.isclose(pt.chain_rule_kl(policy, ref), direct, rel_tol=1e-10)
    # the per-token KL at the first position is the same for every sequence
    assert np.ptp(pt.token_kls(policy, ref)[:, 0]) < 1e-12


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_k1_and_k3_are_unbiased_k2_is_not(pair, level):
    policy, ref = pair
    kl = pt.sequence_kl(policy, ref)
    assert math.isclose(pt.estimator_expectation(policy, ref, "k1", level), kl, rel_tol=1e-10)
    assert math.isclose(pt.estimator_expectation(policy, ref, "k3", level), kl, rel_tol=1e-10)
    assert abs(pt.estimator_expectation(policy, ref, "k2", level) - kl) > 1e-3


def test_monte_carlo_token_k3_converges_to_exact(pair):
    policy, ref = pair
    idx = policy.sample(200_000, np.random.default_rng(0))
    lr = (ref.token_log_probs() - policy.token_log_probs())[idx]
    est = pt.kl_estimator(lr, "k3").sum(axis=1)
    se = est.std() / math.sqrt(est.size)
    assert abs(est.mean() - pt.sequence_kl(policy, ref)) < 4 * se


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_kl_gradient_against_autograd_and_finite_differences(pair, direction):
    policy, ref = pair
    g = pt.kl_gradient(policy, ref, direction)
    assert np.allclose(g, torch_grad(policy, ref, direction), atol=1e-12)
    i, h = 7, 1e-6
    up, down = policy.logits.copy(), policy.logits.copy()
    up.flat[i] += h
    down.flat[i] -= h

    def kl(logits):
        m = policy.with_logits(logits)
        return pt.sequence_kl(m, ref) if direction == "reverse" else pt.sequence_kl(ref, m)

    assert math.isclose((kl(up) - kl(down)) / (2 * h), g[i], rel_tol=1e-5, abs_tol=1e-9)


def test_k1_as_loss_has_zero_expected_gradient(pair):
    policy, ref = pair
    for level in ("sequence", "token"):
        assert np.abs(pt.expected_loss_gradient(policy, ref, "k1", level=level)).max() < 1e-12
    assert np.abs(pt.kl_gradient(policy, ref)).max() > 0.05


def test_k2_as_loss_is_reverse_kl_gradient_on_policy(pair):
    policy, ref = pair
    g = pt.expected_loss_gradient(policy, ref, "k2", level="sequence")
    assert np.allclose(g, torch_grad(policy, ref, "reverse"), atol=1e-12)


def test_k3_as_loss_is_forward_kl_gradient(pair):
    policy, ref = pair
    g = pt.expected_loss_gradient(policy, ref, "k3", level="sequence")
    assert np.allclose(g, torch_grad(policy, ref, "forward"), atol=1e-12)
    assert np.abs(g - torch_grad(policy, ref, "reverse")).max() > 0.05


def test_per_token_k2_misses_the_effect_on_later_states(pair):
    policy, ref = pair
    token = pt.expected_loss_gradient(policy, ref, "k2", level="token")
    assert np.abs(token - torch_grad(policy, ref, "reverse")).max() > 1e-2


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_differentiated_importance_ratio_restores_reverse_kl_gradient(pair, estimator):
    policy, ref = pair
    behaviour = pt.TinyLM.random(V, T, "prefix", scale=0.5, seed=9)
    for mu in (None, behaviour):
        g = pt.expected_loss_gradient(policy, ref, estimator, behaviour=mu, ratio="full")
        assert np.allclose(g, torch_grad(policy, ref, "reverse"), atol=1e-12)


@pytest.mark.parametrize("estimator", pt.ESTIMATORS)
@pytest.mark.parametrize("level", ["sequence", "token"])
@pytest.mark.parametrize("ratio", ["none", "detached", "full"])
def test_expected_loss_gradient_equals_autograd(pair, estimator, level, ratio):
    policy, ref = pair
    behaviour = pt.TinyLM.random(V, T, "bigram", scale=0.5, seed=5)
    kw = dict(level=level, behaviour=behaviour, ratio=ratio)
    assert np.allclose(pt.expected_loss_gradient(policy, ref, estimator, **kw),
                       pt.autograd_loss_gradient(policy, ref, estimator, **kw), atol=1e-12)


def test_detached_ratio_off_policy_equals_on_policy_loss_gradient(pair):
    policy, ref = pair
    behaviour = pt.TinyLM.random(V, T, "prefix", scale=0.5, seed=11)
    off = pt.expected_loss_gradient(policy, ref, "k3", behaviour=behaviour, ratio="detached")
    naive = pt.expected_loss_gradient(policy, ref, "k3", behaviour=behaviour, ratio="none")
    on = pt.expected_loss_gradient(policy, ref, "k3")
    assert np.allclose(off, on, atol=1e-12)
    assert np.abs(naive - on).max() > 1e-3


def test_optimum_matches_brute_force_maximisation(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    beta = 0.5
    lref = brute_log_probs(ref)

    def neg(z):  # -(E_p[r] - beta KL(p || ref)) over the whole simplex, with its gradient
        lp = log_softmax(z)
        p = np.exp(lp)
        g = reward - beta * (lp - lref + 1)
        return -(p @ reward - beta * p @ (lp - lref)), -(p * (g - p @ g))

    res = minimize(neg, np.zeros(reward.size), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=5000, gtol=1e-12, ftol=1e-15))
    probs, log_z = pt.kl_regularised_optimum(ref, reward, beta)
    assert np.allclose(probs, np.exp(log_softmax(res.x)), atol=1e-5)
    assert math.isclose(-res.fun, beta * log_z, rel_tol=1e-8)
    assert math.isclose(pt.objective(probs, ref, reward, beta), beta * log_z, rel_tol=1e-12)
    # and nothing beats it: a random policy, the reference, the argmax
    for p in (ref.probs(), pt.TinyLM.random(V, T, seed=4).probs(), np.eye(reward.size)[reward.argmax()]):
        assert pt.objective(p, ref, reward, beta) < beta * log_z


def test_optimum_limits_in_beta(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    assert np.allclose(pt.kl_regularised_optimum(ref, reward, 1e4)[0], ref.probs(), atol=1e-3)
    top = pt.kl_regularised_optimum(ref, reward, 1e-3)[0]
    assert top[reward < reward.max()].sum() < 1e-6


def test_from_probs_reproduces_the_distribution():
    p = np.random.default_rng(0).dirichlet(np.ones(V**T))
    assert np.allclose(pt.TinyLM.from_probs(p, V, T).probs(), p)


def test_dpo_loss_at_the_optimum_is_the_bradley_terry_likelihood(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    beta = 0.5
    opt = pt.TinyLM.from_probs(pt.kl_regularised_optimum(ref, reward, beta)[0], V, T)
    w, loser = pt.preference_pairs(ref, reward, 500, seed=1)
    bt = np.mean(np.log1p(np.exp(-(reward[w] - reward[loser]))))  # -log sigmoid(r_w - r_l)
    assert math.isclose(pt.dpo_loss(opt, ref, w, loser, beta), bt, rel_tol=1e-10)


def test_dpo_gradient_against_autograd(pair):
    policy, ref = pair
    reward = pt.toy_reward(ref.sequences())
    w, loser = pt.preference_pairs(ref, reward, 64, seed=2)
    beta = 0.3
    model = pt.TinyLM.uniform(V, T, "prefix")
    ctx = torch.as_tensor(np.array(model.contexts()))
    seqs = torch.as_tensor(np.array(model.sequences()))
    theta = torch.tensor(policy.logits, requires_grad=True)
    lp = torch.log_softmax(theta, -1)[ctx, seqs].sum(1)
    h = lp - torch.as_tensor(ref.log_probs())
    z = beta * (h[torch.as_tensor(w)] - h[torch.as_tensor(loser)])
    loss = -torch.nn.functional.logsigmoid(z).mean()
    (g,) = torch.autograd.grad(loss, theta)
    assert math.isclose(loss.item(), pt.dpo_loss(policy, ref, w, loser, beta), rel_tol=1e-12)
    assert np.allclose(pt.dpo_gradient(policy, ref, w, loser, beta), g.numpy().ravel(), atol=1e-12)


def test_preference_pairs_follow_the_reward(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    w, loser = pt.preference_pairs(ref, reward, 4000, seed=0)
    assert np.all(w != loser)
    # P(chosen has the higher reward | rewards differ) under Bradley-Terry, estimated vs its expectation
    d = reward[w] - reward[loser]
    diff = d != 0
    expected = np.mean(1 / (1 + np.exp(-np.abs(d[diff]))))
    assert abs(np.mean(d[diff] > 0) - expected) < 0.03


def test_numpy_adam_equals_chapter_8_adam():
    from klcourse.distillation import _Adam as TorchAdam

    rng = np.random.default_rng(0)
    x = rng.standard_normal(6)
    xt = torch.tensor(x.copy())
    a, b = pt._Adam(6, lr=0.1), TorchAdam([xt], lr=0.1)
    for _ in range(20):
        g = rng.standard_normal(6)
        a.step(x, g)
        b.step([torch.tensor(g)])
    assert np.allclose(x, xt.numpy(), atol=1e-12)


def test_kl_in_reward_training_reaches_the_optimum_and_k1_in_loss_does_not(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    beta = 0.5
    opt = pt.TinyLM.from_probs(pt.kl_regularised_optimum(ref, reward, beta)[0], V, T)
    for seed in range(3):
        good = pt.train_policy(ref, reward, beta, "reward-k1", n_steps=200, seed=seed)
        bad = pt.train_policy(ref, reward, beta, "loss-k1", n_steps=200, seed=seed)
        assert pt.sequence_kl(good.policy, opt) < 0.02
        assert pt.sequence_kl(bad.policy, opt) > 0.3
        assert bad.history["kl"][-1] > 2 * pt.sequence_kl(opt, ref)


def test_ppo_approx_kl_is_k3_of_the_old_policy_from_the_new():
    """Averaged under pi_old (exact enumeration), the approx_kl term is D(pi_old || pi) by scipy, at any distance;
    the swapped ratio (pi_old / pi) would give chi^2 - D, half as large again for the last pair."""
    for p_old, p_new in (([0.5, 0.3, 0.2], [0.49, 0.31, 0.2]), ([0.5, 0.3, 0.2], [0.3, 0.3, 0.4]),
                         ([0.7, 0.2, 0.1], [0.2, 0.3, 0.5])):
        p_old, p_new = np.array(p_old), np.array(p_new)
        per_token = [pt._ppo_approx_kl(np.log([b]), np.log([a])) for a, b in zip(p_old, p_new, strict=True)]
        assert np.dot(p_old, per_token) == pytest.approx(scipy.stats.entropy(p_old, p_new), rel=1e-10)


def test_ppo_clip_logs_approx_kl_and_stops_early(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    run = pt.train_policy(ref, reward, 0.5, "ppo-clip", n_steps=30, lr=0.2, n_epochs=8, target_kl=0.005)
    assert np.all(np.isfinite(run.history["approx_kl"][1:]))
    assert run.history["inner_steps"][1:].min() < 8  # stopped early at least once
    free = pt.train_policy(ref, reward, 0.5, "ppo-clip", n_steps=30, lr=0.2, n_epochs=8)
    assert np.all(free.history["inner_steps"][1:] == 8)


def test_adaptive_controller_moves_beta_towards_target(pair):
    _, ref = pair
    reward = pt.toy_reward(ref.sequences())
    run = pt.train_policy(ref, reward, 0.05, "reward-k1", n_steps=150, kl_target=0.3, horizon=200)
    assert run.history["beta"][-1] > 0.05
    assert abs(run.history["kl"][-1] - 0.3) < abs(
        pt.train_policy(ref, reward, 0.05, "reward-k1", n_steps=150).history["kl"][-1] - 0.3)


def test_forward_distillation_into_independent_tokens_gives_the_marginals():
    teacher = pt.TinyLM.random(V, T, "bigram", scale=2.0, seed=3)
    run = pt.distil(teacher, "position", "forward", n_steps=600, lr=0.1)
    seqs, p = teacher.sequences(), teacher.probs()
    marginals = np.stack([[p[seqs[:, t] == v].sum() for v in range(V)] for t in range(T)])
    student = np.exp(log_softmax(run.student.logits, axis=1))
    assert np.allclose(student, marginals, atol=1e-3)
    rev = pt.distil(teacher, "position", "reverse", n_steps=600, lr=0.1)
    # reverse KL descends, but can settle on a minor mode: only its own objective is promised to fall
    assert rev.reverse[-1] < rev.reverse[0] / 2 and run.forward[-1] < rev.forward[-1]


def test_word_level_distillation_on_teacher_prefixes_is_sequence_forward_kl():
    teacher = pt.TinyLM.random(V, T, "prefix", scale=1.0, seed=6)
    student = pt.TinyLM.random(V, T, "bigram", scale=0.5, seed=7)
    g = pt.token_distillation_gradient(student, teacher, "forward", "teacher")
    seq = -(teacher.probs() @ student.scores())  # grad of D(teacher || student)
    assert np.allclose(g, seq, atol=1e-12)
    on_policy = pt.token_distillation_gradient(student, teacher, "reverse", "student")
    # on student prefixes, the per-token reverse KL misses the prefix term of the sequence reverse KL
    w = student.probs() * (student.log_probs() - teacher.log_probs())
    assert np.abs(on_policy - w @ student.scores()).max() > 1e-3


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
@pytest.mark.parametrize("prefixes", ["teacher", "student"])
def test_token_distillation_gradient_against_autograd(divergence, prefixes):
    teacher = pt.TinyLM.random(V, T, "prefix", scale=1.0, seed=6)
    student = pt.TinyLM.random(V, T, "bigram", scale=0.5, seed=7)
    mu = torch.as_tensor((teacher if prefixes == "teacher" else student).probs())
    theta = torch.tensor(student.logits, requires_grad=True)
    ls = torch.log_softmax(theta, -1)[torch.as_tensor(np.array(student.contexts()))]  # (n, T, V)
    lt = torch.as_tensor(teacher.conditionals())
    if divergence == "forward":
        per = (lt.exp() * (lt - ls)).sum(-1)
    else:
        per = (ls.exp() * (ls - lt)).sum(-1)
    (g,) = torch.autograd.grad((mu[:, None] * per).sum(), theta)
    got = pt.token_distillation_gradient(student, teacher, divergence, prefixes)
    assert np.allclose(got, g.numpy().ravel(), atol=1e-12)


@pytest.mark.parametrize("call", [
    lambda: pt.TinyLM(np.zeros((3, 3)), 4, "prefix"),
    lambda: pt.TinyLM(np.zeros((40, 3)), 4, "trigram"),
    lambda: pt.TinyLM(np.full((40, 3), np.nan), 4),
    lambda: pt.all_sequences(1, 4),
    lambda: pt.all_sequences(10, 6),
    lambda: pt.kl_estimator([0.1], "k4"),
    lambda: pt.kl_regularised_optimum(pt.TinyLM.uniform(3, 4), np.zeros(81), 0.0),
    lambda: pt.kl_regularised_optimum(pt.TinyLM.uniform(3, 4), np.zeros(80), 1.0),
    lambda: pt.sequence_kl(pt.TinyLM.uniform(3, 4), pt.TinyLM.uniform(3, 3)),
    lambda: pt.kl_gradient(pt.TinyLM.uniform(3, 4), pt.TinyLM.uniform(3, 4), "sideways"),
    lambda: pt.expected_loss_gradient(pt.TinyLM.uniform(3, 4), pt.TinyLM.uniform(3, 4), level="word"),
    lambda: pt.train_policy(pt.TinyLM.uniform(3, 4), np.zeros(81), 0.1, "sgd"),
    lambda: pt.train_policy(pt.TinyLM.uniform(3, 4), np.zeros(81), 0.1, "ppo-penalty"),
    lambda: pt.distil(pt.TinyLM.uniform(3, 4), direction="both"),
    lambda: pt.token_distillation_gradient(pt.TinyLM.uniform(3, 4), pt.TinyLM.uniform(3, 4), "both"),
    lambda: pt.token_distillation_gradient(pt.TinyLM.uniform(3, 4), pt.TinyLM.uniform(3, 4),
                                           prefixes="mixed"),
    lambda: pt.TinyLM.from_probs(np.full(81, 1 / 80), 3, 4),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
