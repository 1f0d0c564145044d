"""KL in language-model post-training (chapter 10), on a language model small enough to enumerate.

A :class:`TinyLM` generates sequences of ``length`` tokens from a vocabulary of ``vocab_size`` tokens, one
token at a time: ``pi(x) = prod_t pi(x_t | context_t)``. Its parameters are a table of logits, one row per
context. The context of position ``t`` is, by ``kind``:

``"prefix"``    the whole prefix ``x_<t`` (a table over every prefix: it can represent any distribution),
``"bigram"``    the previous token (or a start symbol),
``"position"``  the position ``t`` only (the tokens are independent),
``"unigram"``   nothing (independent, identically distributed tokens).

With ``vocab_size ** length`` sequences (81 for the chapter's 3 tokens and length 4) every expectation in the
chapter is also a finite sum, so each estimate and each gradient can be compared with its exact value.

Conventions: ``policy`` is the model being trained, ``ref`` the reference; the KL penalty is the reverse
KL of the reference from the policy, ``D(pi || pi_ref)`` (expectation under the policy). Per token and per
sequence, ``log_r = log pi_ref - log pi`` on draws from ``pi``; ``k1 = -log_r``, ``k2 = log_r**2 / 2``,
``k3 = (exp(log_r) - 1) - log_r`` (Schulman, 2020). Natural logs: nats.

Everything is NumPy; gradients are written out (the score of a softmax table) and tested against PyTorch's
autograd. torch is imported only by :func:`autograd_loss_gradient`.

References
----------
Schulman, J. (2020). Approximating KL divergence. http://joschu.net/blog/kl-approx.html
Ziegler, D. M. et al. (2019). Fine-tuning language models from human preferences. arXiv:1909.08593.
Ouyang, L. et al. (2022). Training language models to follow instructions with human feedback. NeurIPS.
Schulman, J. et al. (2017). Proximal policy optimization algorithms. arXiv:1707.06347.
Shao, Z. et al. (2024). DeepSeekMath. arXiv:2402.03300 (GRPO).
Rafailov, R. et al. (2023). Direct preference optimization. NeurIPS.
Tang, Y. & Munos, R. (2025). On a few pitfalls in KL divergence gradient estimation for RL. arXiv:2506.09477.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "CONTEXTS",
    "ESTIMATORS",
    "METHODS",
    "DistillRun",
    "TinyLM",
    "TrainRun",
    "all_preference_pairs",
    "all_sequences",
    "autograd_loss_gradient",
    "chain_rule_kl",
    "distil",
    "distil_tokens",
    "dpo_gradient",
    "dpo_loss",
    "estimator_expectation",
    "expected_loss_gradient",
    "kl_estimator",
    "kl_gradient",
    "kl_regularised_optimum",
    "objective",
    "preference_pairs",
    "sequence_kl",
    "token_distillation_gradient",
    "token_kls",
    "toy_reward",
    "train_dpo",
    "train_policy",
]

CONTEXTS = ("prefix", "bigram", "position", "unigram")
ESTIMATORS = ("k1", "k2", "k3")
LEVELS = ("sequence", "token")
RATIOS = ("none", "detached", "full")
METHODS = ("reward-k1", "loss-k1", "loss-k2", "loss-k3", "ppo-clip", "ppo-penalty", "grpo")


# --------------------------------------------------------------------------- enumeration
def _check_size(vocab_size, length) -> tuple[int, int]:
    for name, value in (("vocab_size", vocab_size), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
    if vocab_size**length > 100_000:
        raise ValueError(f"{vocab_size}**{length} sequences are too many to enumerate (limit 100000)")
    return int(vocab_size), int(length)


@lru_cache(maxsize=32)
def _sequences(vocab_size: int, length: int) -> np.ndarray:
    grid = np.indices((vocab_size,) * length).reshape(length, -1).T
    grid.setflags(write=False)
    return grid


def all_sequences(vocab_size: int, length: int) -> np.ndarray:
    """Every sequence of ``length`` tokens from ``range(vocab_size)``, in lexicographic order.

    Parameters
    ----------
    vocab_size, length : int
        At most 100000 sequences in all.

    Returns
    -------
    numpy.ndarray
        Integer array of shape ``(vocab_size ** length, length)``; row ``i`` is sequence number ``i``.
    """
    return _sequences(*_check_size(vocab_size, length))


def _n_contexts(kind: str, vocab_size: int, length: int) -> int:
    if kind == "prefix":
        return (vocab_size**length - 1) // (vocab_size - 1)
    return {"bigram": vocab_size + 1, "position": length, "unigram": 1}[kind]


@lru_cache(maxsize=64)
def _context_index(kind: str, vocab_size: int, length: int) -> np.ndarray:
    seqs = _sequences(vocab_size, length)
    n, t_idx = seqs.shape[0], np.arange(length)
    if kind == "prefix":
        ctx = np.zeros((n, length), dtype=int)
        code = np.zeros(n, dtype=int)
        for t in range(length):
            offset = (vocab_size**t - 1) // (vocab_size - 1)
            ctx[:, t] = offset + code
            code = code * vocab_size + seqs[:, t]
    elif kind == "bigram":
        ctx = np.concatenate([np.full((n, 1), vocab_size), seqs[:, :-1]], axis=1)
    elif kind == "position":
        ctx = np.broadcast_to(t_idx, (n, length)).copy()
    else:
        ctx = np.zeros((n, length), dtype=int)
    ctx.setflags(write=False)
    return ctx


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------- the model
@dataclass
class TinyLM:
    """An autoregressive model over ``vocab_size ** length`` sequences with a table of logits.

    Parameters
    ----------
    logits : array_like, shape (n_contexts, vocab_size)
        Row ``c`` holds the logits of the next token in context ``c``.
    length : int
        Number of tokens per sequence.
    kind : {"prefix", "bigram", "position", "unigram"}
        What the context of a position is (see the module docstring).

    Examples
    --------
    >>> lm = TinyLM.uniform(3, 4)
    >>> float(lm.probs().sum())
    1.0
    """

    logits: np.ndarray
    length: int
    kind: str = "prefix"

    def __post_init__(self):
        if self.kind not in CONTEXTS:
            raise ValueError(f"kind must be one of {CONTEXTS}, got {self.kind!r}")
        logits = np.array(self.logits, dtype=float)
        if logits.ndim != 2:
            raise ValueError(f"logits must be a 2-d table (contexts x vocabulary), got shape {logits.shape}")
        if not np.all(np.isfinite(logits)):
            raise ValueError("logits must be finite")
        _check_size(logits.shape[1], self.length)
        expected = _n_contexts(self.kind, logits.shape[1], self.length)
        if logits.shape[0] != expected:
            raise ValueError(f"a {self.kind!r} model of length {self.length} over {logits.shape[1]} tokens has "
                             f"{expected} contexts; logits has {logits.shape[0]} rows")
        self.logits = logits

    # ---- construction
    @classmethod
    def uniform(cls, vocab_size: int, length: int, kind: str = "prefix") -> TinyLM:
        """Every token equally likely in every context."""
        vocab_size, length = _check_size(vocab_size, length)
        if kind not in CONTEXTS:
            raise ValueError(f"kind must be one of {CONTEXTS}, got {kind!r}")
        return cls(np.zeros((_n_contexts(kind, vocab_size, length), vocab_size)), length, kind)

    @classmethod
    def random(cls, vocab_size: int, length: int, kind: str = "prefix", *, scale: float = 1.0,
               seed: int = 0) -> TinyLM:
        """Logits drawn from N(0, scale^2) with a seeded generator."""
        base = cls.uniform(vocab_size, length, kind)
        rng = np.random.default_rng(seed)
        return cls(scale * rng.standard_normal(base.logits.shape), length, kind)

    @classmethod
    def from_probs(cls, probs, vocab_size: int, length: int) -> TinyLM:
        """The ``"prefix"`` model whose sequence probabilities are ``probs`` (all must be positive)."""
        vocab_size, length = _check_size(vocab_size, length)
        probs = np.asarray(probs, dtype=float)
        if probs.shape != (vocab_size**length,):
            raise ValueError(f"probs must have shape ({vocab_size ** length},), got {probs.shape}")
        if np.any(probs <= 0) or not np.isclose(probs.sum(), 1.0, atol=1e-9):
            raise ValueError("probs must be positive and sum to 1")
        logits = np.zeros((_n_contexts("prefix", vocab_size, length), vocab_size))
        mass = probs.reshape((vocab_size,) * length)
        for t in range(length):
            # mass of every prefix of length t + 1, shape (V,)*(t+1), flattened in prefix order
            marg = mass.sum(axis=tuple(range(t + 1, length))) if t + 1 < length else mass
            offset = (vocab_size**t - 1) // (vocab_size - 1)
            logits[offset:offset + vocab_size**t] = np.log(marg.reshape(vocab_size**t, vocab_size))
        return cls(logits, length, "prefix")

    def as_prefix(self) -> TinyLM:
        """The same distribution as a ``"prefix"`` model (a table over every prefix)."""
        return TinyLM.from_probs(self.probs(), self.vocab_size, self.length)

    def with_logits(self, logits) -> TinyLM:
        """A model of the same kind and size with other logits."""
        return TinyLM(logits, self.length, self.kind)

    # ---- sizes
    @property
    def vocab_size(self) -> int:
        return self.logits.shape[1]

    @property
    def n_params(self) -> int:
        return self.logits.size

    def sequences(self) -> np.ndarray:
        """All sequences, shape ``(vocab_size ** length, length)`` (see :func:`all_sequences`)."""
        return _sequences(self.vocab_size, self.length)

    def contexts(self) -> np.ndarray:
        """Context index of every position of every sequence, shape ``(n_sequences, length)``."""
        return _context_index(self.kind, self.vocab_size, self.length)

    # ---- probabilities (of every enumerated sequence)
    def conditionals(self) -> np.ndarray:
        """``log pi(. | context)`` at every position of every sequence, shape ``(n_seq, length, vocab)``."""
        return _log_softmax(self.logits)[self.contexts()]

    def token_log_probs(self) -> np.ndarray:
        """``log pi(x_t | x_<t)`` for every sequence and position, shape ``(n_seq, length)``."""
        table = _log_softmax(self.logits)
        return table[self.contexts(), self.sequences()]

    def log_probs(self) -> np.ndarray:
        """``log pi(x)`` of every sequence, shape ``(n_seq,)``."""
        return self.token_log_probs().sum(axis=1)

    def probs(self) -> np.ndarray:
        """``pi(x)`` of every sequence; sums to 1."""
        return np.exp(self.log_probs())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``n`` sequences drawn from the model (same law as sampling token by token)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive whole number, got {n!r}")
        p = self.probs()
        return rng.choice(p.size, size=int(n), p=p / p.sum())

    # ---- scores
    def token_scores(self, idx=None) -> np.ndarray:
        """``grad_theta log pi(x_t | x_<t)``, shape ``(n_seq, length, n_params)`` (logits flattened).

        ``idx`` (optional) selects sequences by index: then ``n_seq = len(idx)``.
        """
        seqs, ctx = self.sequences(), self.contexts()
        if idx is not None:
            seqs, ctx = seqs[idx], ctx[idx]
        n, length = seqs.shape
        v = self.vocab_size
        local = -np.exp(_log_softmax(self.logits)[ctx])  # (n, T, V)
        rows, cols = np.arange(n)[:, None], np.arange(length)[None, :]
        local[rows, cols, seqs] += 1.0
        out = np.zeros((n, length, self.logits.size))
        for t in range(length):
            for k in range(v):
                out[np.arange(n), t, ctx[:, t] * v + k] = local[:, t, k]
        return out

    def scores(self, idx=None) -> np.ndarray:
        """``grad_theta log pi(x)`` of every sequence (or of ``idx``), shape ``(n_seq, n_params)``."""
        seqs, ctx = self.sequences(), self.contexts()
        if idx is not None:
            seqs, ctx = seqs[idx], ctx[idx]
        n, length = seqs.shape
        v = self.vocab_size
        local = -np.exp(_log_softmax(self.logits)[ctx])
        local[np.arange(n)[:, None], np.arange(length)[None, :], seqs] += 1.0
        out = np.zeros((n, self.logits.size))
        rows = np.arange(n)
        for t in range(length):
            for k in range(v):
                out[rows, ctx[:, t] * v + k] += local[:, t, k]
        return out


def _same_space(*models: TinyLM) -> None:
    for m in models:
        if not isinstance(m, TinyLM):
            raise ValueError(f"expected a TinyLM, got {type(m).__name__}")
    first = models[0]
    for m in models[1:]:
        if (m.vocab_size, m.length) != (first.vocab_size, first.length):
            raise ValueError("the models must share vocabulary size and length: "
                             f"({first.vocab_size}, {first.length}) vs ({m.vocab_size}, {m.length})")


# --------------------------------------------------------------------------- KL, exactly
def sequence_kl(p: TinyLM, q: TinyLM) -> float:
    """``D(p || q)`` over whole sequences, by enumeration (nats; expectation under ``p``).

    Parameters
    ----------
    p, q : TinyLM
        Models over the same vocabulary and length.

    Returns
    -------
    float
        ``sum_y p(y) (log p(y) - log q(y))``.

    Raises
    ------
    ValueError
        If the models differ in vocabulary size or length, or are not TinyLM.
    """
    _same_space(p, q)
    lp = p.log_probs()
    return float(np.sum(np.exp(lp) * (lp - q.log_probs())))


def token_kls(p: TinyLM, q: TinyLM) -> np.ndarray:
    """Per-token KL ``D(p(. | x_<t) || q(. | x_<t))`` at every prefix of every sequence.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_seq, length)``; entry ``(i, t)`` depends only on the first ``t`` tokens of sequence ``i``.
    """
    _same_space(p, q)
    lp, lq = p.conditionals(), q.conditionals()
    return np.sum(np.exp(lp) * (lp - lq), axis=-1)


def chain_rule_kl(p: TinyLM, q: TinyLM) -> float:
    """``E_p[sum_t D(p(. | x_<t) || q(. | x_<t))]``: the chain rule's route to :func:`sequence_kl`.

    Parameters
    ----------
    p, q : TinyLM

    Returns
    -------
    float
        Equal to ``sequence_kl(p, q)`` (tested).
    """
    return float(np.sum(p.probs() * token_kls(p, q).sum(axis=1)))


def kl_estimator(log_r, estimator: str = "k3") -> np.ndarray:
    """Per-sample k1, k2 or k3 from ``log_r = log pi_ref - log pi`` on draws from ``pi``.

    Parameters
    ----------
    log_r : array_like
        Log-ratios, per token or per sequence.
    estimator : {"k1", "k2", "k3"}

    Returns
    -------
    numpy.ndarray
        Same shape as ``log_r``. k1 and k3 average to ``D(pi || pi_ref)``; k2 is biased.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    log_r = np.asarray(log_r, dtype=float)
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r**2
    return np.expm1(log_r) - log_r


def _derivative(log_r: np.ndarray, estimator: str) -> np.ndarray:
    """d k / d log_r."""
    if estimator == "k1":
        return -np.ones_like(log_r)
    if estimator == "k2":
        return log_r
    return np.expm1(log_r)


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def _log_ratios(policy: TinyLM, ref: TinyLM, level: str) -> np.ndarray:
    lr = ref.token_log_probs() - policy.token_log_probs()
    return lr.sum(axis=1) if level == "sequence" else lr


def estimator_expectation(policy: TinyLM, ref: TinyLM, estimator: str = "k3", level: str = "token") -> float:
    """Exact ``E_pi`` of a KL estimate of one sequence: ``k(sum_t log_r_t)`` or ``sum_t k(log_r_t)``.

    Parameters
    ----------
    policy, ref : TinyLM
    estimator : {"k1", "k2", "k3"}
    level : {"sequence", "token"}
        ``"sequence"`` applies the estimator to the sequence's log-ratio, ``"token"`` sums it over tokens.

    Returns
    -------
    float
        Equals :func:`sequence_kl` ``(policy, ref)`` for k1 and k3 at both levels; k2 is biased.
    """
    _same_space(policy, ref)
    _check_level(level)
    k = kl_estimator(_log_ratios(policy, ref, level), estimator)
    return float(np.sum(policy.probs() * (k if level == "sequence" else k.sum(axis=1))))


# --------------------------------------------------------------------------- the KL-regularised optimum
def toy_reward(seqs, *, a_bonus: float = 0.75, repeat_penalty: float = 1.0) -> np.ndarray:
    """The chapter's reward: ``a_bonus`` per token 0 ("a") minus ``repeat_penalty`` per repeated neighbour.

    Parameters
    ----------
    seqs : array_like of int, shape (n, length)

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    seqs = np.asarray(seqs)
    if seqs.ndim != 2 or seqs.shape[1] < 1:
        raise ValueError(f"seqs must be a 2-d array (sequences x positions), got shape {seqs.shape}")
    repeats = np.sum(seqs[:, 1:] == seqs[:, :-1], axis=1)
    return a_bonus * np.sum(seqs == 0, axis=1) - repeat_penalty * repeats


def _check_reward(reward, n: int) -> np.ndarray:
    reward = np.asarray(reward, dtype=float)
    if reward.shape != (n,):
        raise ValueError(f"reward must hold one value per sequence, shape ({n},); got {reward.shape}")
    if not np.all(np.isfinite(reward)):
        raise ValueError("reward must be finite")
    return reward


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)) \
            or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    return float(beta)


def kl_regularised_optimum(ref: TinyLM, reward, beta: float) -> tuple[np.ndarray, float]:
    """``pi*(x) = pi_ref(x) exp(r(x)/beta) / Z``, the maximiser of ``E_pi[r] - beta D(pi || pi_ref)``.

    Parameters
    ----------
    ref : TinyLM
    reward : array_like, shape (n_seq,)
        One reward per enumerated sequence.
    beta : float
        Strength of the KL penalty (> 0).

    Returns
    -------
    probs : numpy.ndarray, shape (n_seq,)
        The optimum's sequence probabilities.
    log_z : float
        ``log Z``; the optimum's objective value is ``beta * log_z``.
    """
    beta = _check_beta(beta)
    reward = _check_reward(reward, ref.sequences().shape[0])
    a = ref.log_probs() + reward / beta
    log_z = float(np.logaddexp.reduce(a))
    return np.exp(a - log_z), log_z


def objective(probs, ref: TinyLM, reward, beta: float) -> float:
    """``E_pi[r] - beta D(pi || pi_ref)`` for sequence probabilities ``probs`` (zeros allowed).

    Parameters
    ----------
    probs : array_like, shape (n_seq,)
        Any distribution over the enumerated sequences.
    ref : TinyLM
    reward : array_like, shape (n_seq,)
    beta : float

    Returns
    -------
    float
        At most ``beta * log Z``, reached at :func:`kl_regularised_optimum`.
    """
    beta = _check_beta(beta)
    probs = np.asarray(probs, dtype=float)
    reward = _check_reward(reward, ref.sequences().shape[0])
    if probs.shape != reward.shape:
        raise ValueError(f"probs must have shape {reward.shape}, got {probs.shape}")
    pos = probs > 0
    kl = np.sum(probs[pos] * (np.log(probs[pos]) - ref.log_probs()[pos]))
    return float(probs @ reward - beta * kl)


# --------------------------------------------------------------------------- gradients
def kl_gradient(policy: TinyLM, ref: TinyLM, direction: str = "reverse") -> np.ndarray:
    """Exact gradient w.r.t. the policy's logits (flattened) of ``D(pi || pi_ref)`` or ``D(pi_ref || pi)``.

    Parameters
    ----------
    policy, ref : TinyLM
    direction : {"reverse", "forward"}
        ``"reverse"``: ``E_pi[(log pi - log pi_ref) grad log pi]``;
        ``"forward"``: ``-E_pi_ref[grad log pi]``.

    Returns
    -------
    numpy.ndarray, shape (policy.n_params,)
    """
    _same_space(policy, ref)
    if direction == "reverse":
        w = policy.probs() * (policy.log_probs() - ref.log_probs())
        return w @ policy.scores()
    if direction == "forward":
        return -(ref.probs() @ policy.scores())
    raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}")


def expected_loss_gradient(policy: TinyLM, ref: TinyLM, estimator: str = "k3", *, level: str = "sequence",
                           behaviour: TinyLM | None = None, ratio: str = "none") -> np.ndarray:
    """Exact expected gradient of a KL estimate *used as a loss*: what autograd returns on average.

    The loss of a draw ``x ~ mu`` is ``L(x) = w(x) * k(...)``, with ``k`` applied to the sequence log-ratio
    (``level="sequence"``) or summed over the per-token ones (``level="token"``), ``log_r = log pi_ref -
    log pi``. The draw itself is not differentiated (it is data), so only ``L`` is.

    Parameters
    ----------
    policy, ref : TinyLM
    estimator : {"k1", "k2", "k3"}
    level : {"sequence", "token"}
    behaviour : TinyLM, optional
        The sampling distribution ``mu`` (default: the policy itself, on-policy).
    ratio : {"none", "detached", "full"}
        ``w = 1``; ``w = pi/mu`` as a constant; or ``w = pi/mu`` differentiated too.

    Returns
    -------
    numpy.ndarray, shape (n_params,)
        ``E_mu[grad L]``. On-policy with ``ratio="none"``: 0 for k1, ``grad D(pi || pi_ref)`` for k2 at
        sequence level, ``grad D(pi_ref || pi)`` (the *forward* KL) for k3 at sequence level. With
        ``ratio="full"``: ``grad E_pi[k]``, the reverse KL's gradient for k1 and k3.
    """
    behaviour = policy if behaviour is None else behaviour
    _same_space(policy, ref, behaviour)
    _check_level(level)
    if ratio not in RATIOS:
        raise ValueError(f"ratio must be one of {RATIOS}, got {ratio!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    lr = _log_ratios(policy, ref, level)
    if level == "sequence":
        loss = kl_estimator(lr, estimator)
        grad = -_derivative(lr, estimator)[:, None] * policy.scores()
    else:
        loss = kl_estimator(lr, estimator).sum(axis=1)
        grad = -np.einsum("nt,ntp->np", _derivative(lr, estimator), policy.token_scores())
    mu = behaviour.probs()
    w = np.exp(policy.log_probs() - behaviour.log_probs())
    if ratio == "none":
        per = grad
    elif ratio == "detached":
        per = w[:, None] * grad
    else:
        per = w[:, None] * (grad + loss[:, None] * policy.scores())
    return mu @ per


def autograd_loss_gradient(policy: TinyLM, ref: TinyLM, estimator: str = "k3", *, level: str = "sequence",
                           behaviour: TinyLM | None = None, ratio: str = "none") -> np.ndarray:
    """:func:`expected_loss_gradient` computed by PyTorch's autograd on the enumerated loss.

    The loss ``sum_x mu(x) L(x)`` is built in torch with ``mu`` a constant, exactly as a training loop
    builds ``L`` on drawn samples; ``torch.autograd.grad`` differentiates it. Needs the ``torch`` extra.
    """
    from klcourse._optional import require_torch

    torch = require_torch()
    behaviour = policy if behaviour is None else behaviour
    _same_space(policy, ref, behaviour)
    _check_level(level)
    if ratio not in RATIOS or estimator not in ESTIMATORS:
        raise ValueError(f"ratio must be one of {RATIOS} and estimator one of {ESTIMATORS}")
    theta = torch.tensor(policy.logits, dtype=torch.float64, requires_grad=True)
    ctx = torch.as_tensor(np.array(policy.contexts()))
    seqs = torch.as_tensor(np.array(policy.sequences()))
    logp_t = torch.log_softmax(theta, dim=-1)[ctx, seqs]  # (n, T)
    lr = torch.as_tensor(ref.token_log_probs()) - logp_t
    if level == "sequence":
        lr = lr.sum(dim=1)
    if estimator == "k1":
        k = -lr
    elif estimator == "k2":
        k = 0.5 * lr**2
    else:
        k = torch.expm1(lr) - lr
    if level == "token":
        k = k.sum(dim=1)
    log_w = logp_t.sum(dim=1) - torch.as_tensor(behaviour.log_probs())
    w = {"none": torch.ones_like(log_w), "detached": log_w.detach().exp(), "full": log_w.exp()}[ratio]
    total = torch.sum(torch.as_tensor(behaviour.probs()) * w * k)
    (grad,) = torch.autograd.grad(total, theta)
    return grad.numpy().ravel()


# --------------------------------------------------------------------------- training
class _Adam:
    """Adam on a NumPy array, with the defaults and update order of ``klcourse.distillation._Adam``.

    The same arithmetic as the chapter-8 optimiser (itself checked against ``torch.optim.Adam``), on NumPy
    arrays so that this chapter's trainers never import torch.
    """

    def __init__(self, shape, *, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps, self.t = float(lr), betas, eps, 0
        self.m, self.v = np.zeros(shape), np.zeros(shape)

    def step(self, param: np.ndarray, grad: np.ndarray) -> None:
        """Update ``param`` in place, descending along ``grad``."""
        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - beta1**self.t)
        root_correction = math.sqrt(1 - beta2**self.t)
        self.m += (grad - self.m) * (1 - beta1)
        self.v *= beta2
        self.v += (1 - beta2) * grad * grad
        param -= step_size * self.m / (np.sqrt(self.v) / root_correction + self.eps)


@dataclass
class TrainRun:
    """What :func:`train_policy` returns.

    Attributes
    ----------
    policy : TinyLM
        The trained policy.
    history : dict of numpy.ndarray
        Per step: ``"reward"`` (exact ``E_pi[r]``), ``"kl"`` (exact ``D(pi || pi_ref)``), ``"kl_forward"``
        (exact ``D(pi_ref || pi)``), ``"approx_kl"`` (PPO's logged k3 estimate of ``D(pi_old || pi)``, NaN for
        the other methods), ``"beta"`` (the penalty in force), ``"inner_steps"`` (PPO/GRPO updates taken).
    """

    policy: TinyLM
    history: dict


def _ppo_approx_kl(new_lp: np.ndarray, old_lp: np.ndarray) -> float:
    """PPO's ``approx_kl``: the mean k3 estimate of D(pi_old || pi) on tokens drawn from pi_old.

    The draws come from pi_old, so the ratio in k3 = (r - 1) - log r is r = pi / pi_old (as in Stable-Baselines3
    and CleanRL). Swapping it, r = pi_old / pi, estimates chi^2(pi_old || pi) - D instead, biased upwards.
    """
    return float(np.mean(kl_estimator(np.asarray(new_lp) - np.asarray(old_lp), "k3")))


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


def train_policy(ref: TinyLM, reward, beta: float, method: str = "reward-k1", *, n_steps: int = 200,
                 batch_size: int = 32, lr: float = 0.05, seed: int = 0, init: TinyLM | None = None,
                 clip: float = 0.2, n_epochs: int = 4, target_kl: float | None = None,
                 kl_target: float | None = None, horizon: float = 2000.0) -> TrainRun:
    """Train a ``"prefix"`` policy from ``pi_ref`` on the reward with a KL penalty, by sampling.

    Parameters
    ----------
    ref : TinyLM
        The reference policy; training starts from it (or from ``init``).
    reward : array_like, shape (n_seq,)
    beta : float
        KL penalty strength (> 0). For ``"ppo-penalty"`` it is the starting coefficient of the penalty
        ``D(pi_old || pi)`` of Schulman et al. (2017), adapted towards ``target_kl``.
    method : str
        ``"reward-k1"``: REINFORCE on ``r - beta * (log pi - log pi_ref)`` per sequence (KL in the reward);
        ``"loss-k1"``, ``"loss-k2"``, ``"loss-k3"``: REINFORCE on ``r`` plus ``beta * sum_t k(log_r_t)`` added
        to the loss and differentiated (KL in the loss, per token, as GRPO does);
        ``"ppo-clip"``: KL in the reward, per-token clipped ratios, ``n_epochs`` passes per batch, the k3
        estimate ``approx_kl`` of ``D(pi_old || pi)`` logged and used to stop early above ``1.5 target_kl``;
        ``"ppo-penalty"``: reward ``r`` only, ``beta_t * D(pi_old || pi)`` (k3) in the loss, ``beta_t`` doubled
        or halved around ``target_kl``;
        ``"grpo"``: group-relative advantage ``(r - mean) / std`` over the batch (one group), per-token clipped
        ratios and ``beta * k3`` per token in the loss (Shao et al., 2024).
    n_steps, batch_size : int
        Batches drawn, and sequences per batch (the GRPO group).
    lr : float
        Adam's step size.
    seed : int
    init : TinyLM, optional
        Starting policy (default: ``ref`` as a prefix model).
    clip, n_epochs, target_kl
        PPO/GRPO settings; ``target_kl=None`` never stops early (``"ppo-penalty"`` needs it).
    kl_target, horizon
        With ``"reward-k1"``: the adaptive controller of Ziegler et al. (2019),
        ``beta <- beta (1 + clip((KL - kl_target)/kl_target, -0.2, 0.2) * batch_size / horizon)``, KL the
        batch's k1 estimate.

    Returns
    -------
    TrainRun
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    beta = _check_beta(beta)
    n_steps, batch_size, n_epochs = (_positive_int(k, v) for k, v in
                                     (("n_steps", n_steps), ("batch_size", batch_size), ("n_epochs", n_epochs)))
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if method == "ppo-penalty" and target_kl is None:
        raise ValueError("ppo-penalty adapts its coefficient around target_kl: give target_kl")
    if kl_target is not None and (method != "reward-k1" or kl_target <= 0):
        raise ValueError("kl_target (the adaptive controller) is for method='reward-k1' and must be > 0")
    ref_p = ref.as_prefix()
    policy = (ref_p if init is None else init.as_prefix()).with_logits((ref_p if init is None else
                                                                       init.as_prefix()).logits.copy())
    _same_space(policy, ref)
    reward = _check_reward(reward, ref.sequences().shape[0])
    rng = np.random.default_rng(seed)
    opt = _Adam(policy.logits.size, lr=lr)
    ref_tok = ref.token_log_probs()
    keys = ("reward", "kl", "kl_forward", "approx_kl", "beta", "inner_steps")
    hist = {k: np.full(n_steps + 1, np.nan) for k in keys}

    def log(i, approx=np.nan, inner=0):
        p = policy.probs()
        hist["reward"][i] = p @ reward
        hist["kl"][i] = sequence_kl(policy, ref)
        hist["kl_forward"][i] = sequence_kl(ref, policy)
        hist["approx_kl"][i], hist["beta"][i], hist["inner_steps"][i] = approx, beta, inner

    log(0)
    for step in range(1, n_steps + 1):
        idx = policy.sample(batch_size, rng)
        tok_lp = policy.token_log_probs()[idx]
        tok_sc = policy.token_scores(idx)  # (B, T, P)
        lr_tok = ref_tok[idx] - tok_lp  # log pi_ref - log pi per token
        approx, inner = np.nan, 1
        if method == "reward-k1" or method.startswith("loss-"):
            if method == "reward-k1":
                shaped = reward[idx] + beta * lr_tok.sum(axis=1)  # r - beta * k1
                if kl_target is not None:
                    err = np.clip((-lr_tok.sum(axis=1).mean() - kl_target) / kl_target, -0.2, 0.2)
                    beta *= 1 + err * batch_size / horizon
            else:
                shaped = reward[idx]
            adv = shaped - shaped.mean()
            grad = -(adv[:, None] * tok_sc.sum(axis=1)).mean(axis=0)
            if method.startswith("loss-"):
                k = method.split("-")[1]
                dk = _derivative(lr_tok, k)
                grad += beta * np.mean(-np.einsum("bt,btp->bp", dk, tok_sc), axis=0)
            opt.step(policy.logits.reshape(-1), grad)
        else:
            old_lp = tok_lp
            if method == "ppo-clip":
                shaped = reward[idx] + beta * lr_tok.sum(axis=1)
                adv = shaped - shaped.mean()
            elif method == "ppo-penalty":
                adv = reward[idx] - reward[idx].mean()
            else:  # grpo
                adv = (reward[idx] - reward[idx].mean()) / (reward[idx].std() + 1e-8)
            inner = 0
            for _ in range(n_epochs):
                new_lp = policy.token_log_probs()[idx]
                sc = policy.token_scores(idx)
                log_rho = new_lp - old_lp
                rho = np.exp(log_rho)
                approx = _ppo_approx_kl(new_lp, old_lp)
                if method != "ppo-penalty" and target_kl is not None and approx > 1.5 * target_kl:
                    break
                a = adv[:, None]
                if method == "ppo-penalty":
                    live = np.ones_like(rho)
                else:
                    live = ~(((a > 0) & (rho > 1 + clip)) | ((a < 0) & (rho < 1 - clip)))
                coef = -(a * rho * live)  # d(-min(rho A, clip(rho) A)) / d log pi_t
                if method == "ppo-penalty":
                    coef = coef + beta * (rho - 1)  # d k3(D(pi_old||pi)) / d log pi_t, r = pi/pi_old
                if method == "grpo":
                    r_ref = np.exp(ref_tok[idx] - new_lp)
                    coef = coef + beta * (1 - r_ref)  # d k3(log pi_ref - log pi) / d log pi_t
                grad = np.einsum("bt,btp->p", coef, sc) / (batch_size * policy.length)
                opt.step(policy.logits.reshape(-1), grad)
                inner += 1
            if method == "ppo-penalty":
                new_lp = policy.token_log_probs()[idx]
                log_rho = new_lp - old_lp
                approx = _ppo_approx_kl(new_lp, old_lp)
                if approx > 1.5 * target_kl:
                    beta *= 2.0
                elif approx < target_kl / 1.5:
                    beta /= 2.0
        log(step, approx, inner)
    return TrainRun(policy, hist)


# --------------------------------------------------------------------------- DPO
def preference_pairs(ref: TinyLM, reward, n_pairs: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of sequences drawn from ``pi_ref``, labelled by the Bradley-Terry model of the reward.

    Each pair ``(y1, y2)`` is drawn independently from ``pi_ref``; ``y1`` is preferred with probability
    ``sigmoid(r(y1) - r(y2))``. Pairs of identical sequences are redrawn.

    Returns
    -------
    chosen, rejected : numpy.ndarray of int, shape (n_pairs,)
        Sequence indices.
    """
    n_pairs = _positive_int("n_pairs", n_pairs)
    reward = _check_reward(reward, ref.sequences().shape[0])
    rng = np.random.default_rng(seed)
    y1, y2 = ref.sample(n_pairs, rng), ref.sample(n_pairs, rng)
    while np.any(same := y1 == y2):
        y2[same] = ref.sample(int(same.sum()), rng)
    first = rng.random(n_pairs) < 1 / (1 + np.exp(-(reward[y1] - reward[y2])))
    return np.where(first, y1, y2), np.where(first, y2, y1)


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _pairs(policy, ref, chosen, rejected, weights):
    _same_space(policy, ref)
    chosen, rejected = np.asarray(chosen), np.asarray(rejected)
    if chosen.shape != rejected.shape or chosen.ndim != 1 or chosen.size == 0:
        raise ValueError("chosen and rejected must be 1-d index arrays of the same, non-zero length")
    n = policy.sequences().shape[0]
    for name, a in (("chosen", chosen), ("rejected", rejected)):
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n:
            raise ValueError(f"{name} must hold sequence indices from 0 to {n - 1}")
    if weights is None:
        weights = np.full(chosen.size, 1.0 / chosen.size)
    else:
        weights = np.asarray(weights, dtype=float)
        if weights.shape != chosen.shape or np.any(weights < 0) or not weights.sum() > 0:
            raise ValueError("weights must be non-negative, one per pair, and not all zero")
        weights = weights / weights.sum()
    return chosen, rejected, weights


def dpo_loss(policy: TinyLM, ref: TinyLM, chosen, rejected, beta: float, weights=None) -> float:
    """The DPO loss ``-mean log sigmoid(beta [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)])`` (Rafailov 2023).

    Parameters
    ----------
    policy, ref : TinyLM
    chosen, rejected : array_like of int
        Sequence indices of the preferred and the other response of each pair.
    beta : float
    weights : array_like, optional
        A weight per pair (normalised to sum 1): a weighted mean instead of the plain one.

    Returns
    -------
    float
        The loss in nats per pair.
    """
    beta = _check_beta(beta)
    chosen, rejected, weights = _pairs(policy, ref, chosen, rejected, weights)
    h = policy.log_probs() - ref.log_probs()
    return float(-weights @ _log_sigmoid(beta * (h[chosen] - h[rejected])))


def dpo_gradient(policy: TinyLM, ref: TinyLM, chosen, rejected, beta: float, weights=None) -> np.ndarray:
    """Gradient of :func:`dpo_loss` w.r.t. the policy's logits (flattened).

    Parameters
    ----------
    policy, ref, chosen, rejected, beta, weights
        As for :func:`dpo_loss`.

    Returns
    -------
    numpy.ndarray, shape (policy.n_params,)
        ``-beta E[sigmoid(-z) (grad log pi(y_w) - grad log pi(y_l))]`` with ``z`` the scaled log-ratio gap.
    """
    beta = _check_beta(beta)
    chosen, rejected, weights = _pairs(policy, ref, chosen, rejected, weights)
    h = policy.log_probs() - ref.log_probs()
    z = beta * (h[chosen] - h[rejected])
    coef = weights / (1 + np.exp(z))  # sigmoid(-z): large when the pair is ranked wrongly
    per_seq = np.bincount(chosen, coef, minlength=h.size) - np.bincount(rejected, coef, minlength=h.size)
    return -beta * (per_seq @ policy.scores())


def train_dpo(ref: TinyLM, chosen, rejected, beta: float, *, weights=None, n_steps: int = 300,
              lr: float = 0.05) -> tuple[TinyLM, np.ndarray]:
    """Minimise :func:`dpo_loss` over a ``"prefix"`` policy started at ``pi_ref`` (full batch, Adam).

    Repeated pairs are merged into one weighted pair first (the same loss, computed faster).

    Returns
    -------
    policy : TinyLM
    losses : numpy.ndarray, shape (n_steps + 1,)
    """
    n_steps = _positive_int("n_steps", n_steps)
    policy = ref.as_prefix()
    chosen, rejected, weights = _pairs(policy, ref, chosen, rejected, weights)
    n = policy.sequences().shape[0]
    keys, inverse = np.unique(chosen * n + rejected, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights)
    chosen, rejected = keys // n, keys % n
    opt = _Adam(policy.logits.size, lr=lr)
    losses = [dpo_loss(policy, ref, chosen, rejected, beta, weights)]
    for _ in range(n_steps):
        opt.step(policy.logits.reshape(-1), dpo_gradient(policy, ref, chosen, rejected, beta, weights))
        losses.append(dpo_loss(policy, ref, chosen, rejected, beta, weights))
    return policy, np.array(losses)


def all_preference_pairs(ref: TinyLM, reward) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair with its probability under ``pi_ref x pi_ref`` and the Bradley-Terry model.

    Returns ``chosen, rejected, weights``: the population version of :func:`preference_pairs`, whose DPO
    minimiser is the KL-regularised optimum.
    """
    n = ref.sequences().shape[0]
    reward = _check_reward(reward, n)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    i, j = i.ravel(), j.ravel()
    keep = i != j
    i, j = i[keep], j[keep]
    p = ref.probs()
    weights = p[i] * p[j] / (1 + np.exp(-(reward[i] - reward[j])))
    return i, j, weights


# --------------------------------------------------------------------------- distillation
@dataclass
class DistillRun:
    """What :func:`distil` returns: the student and, per step, the exact forward and reverse KL."""

    student: TinyLM
    forward: np.ndarray
    reverse: np.ndarray


def distil(teacher: TinyLM, kind: str = "position", direction: str = "forward", *, n_steps: int = 300,
           lr: float = 0.1, seed: int = 0, batch_size: int | None = None) -> DistillRun:
    """Fit a student of context ``kind`` to the teacher by forward or reverse KL.

    ``direction="forward"`` minimises ``D(teacher || student)`` (the student is trained on the teacher's
    sequences, by maximum likelihood on its samples; Kim & Rush's 2016 sequence-level distillation trains on the
    teacher's beam-search output instead, an approximation of its mode, which does not minimise this KL);
    ``"reverse"`` minimises
    ``D(student || teacher)`` (the student is scored on its own sequences, as in MiniLLM and on-policy
    distillation). With ``batch_size=None`` the gradients are exact; otherwise forward uses teacher samples
    (cross-entropy) and reverse uses student samples with the per-token teacher log-ratio as reward
    (REINFORCE with a batch-mean baseline).

    Returns
    -------
    DistillRun
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    n_steps = _positive_int("n_steps", n_steps)
    base = TinyLM.random(teacher.vocab_size, teacher.length, kind, scale=0.01, seed=seed)
    student = base
    rng = np.random.default_rng(seed)
    opt = _Adam(student.logits.size, lr=lr)
    fwd, rev = [sequence_kl(teacher, student)], [sequence_kl(student, teacher)]
    for _ in range(n_steps):
        if batch_size is None:
            if direction == "forward":
                grad = -(teacher.probs() @ student.scores())
            else:
                w = student.probs() * (student.log_probs() - teacher.log_probs())
                grad = w @ student.scores()
        elif direction == "forward":
            idx = teacher.sample(batch_size, rng)
            grad = -student.scores(idx).mean(axis=0)
        else:
            idx = student.sample(batch_size, rng)
            gap = (student.log_probs() - teacher.log_probs())[idx]
            grad = ((gap - gap.mean())[:, None] * student.scores(idx)).mean(axis=0)
        opt.step(student.logits.reshape(-1), grad)
        fwd.append(sequence_kl(teacher, student))
        rev.append(sequence_kl(student, teacher))
    return DistillRun(student, np.array(fwd), np.array(rev))


def token_distillation_gradient(student: TinyLM, teacher: TinyLM, divergence: str = "forward",
                                prefixes: str = "teacher") -> np.ndarray:
    """Exact gradient of a token-level distillation loss w.r.t. the student's logits (flattened).

    The loss is ``sum_y mu(y) sum_t D_t(y_<t)``, with ``D_t`` the per-token KL
    ``D(teacher(. | y_<t) || student(. | y_<t))`` (``divergence="forward"``) or
    ``D(student(. | y_<t) || teacher(. | y_<t))`` (``"reverse"``), and the prefixes drawn from
    ``mu = teacher`` (the teacher's samples) or ``mu = student`` (on-policy, as in GKD, Agarwal et al. 2024).
    As in practice, ``mu`` is not differentiated: the prefixes are data. Kim & Rush's (2016) word-level
    distillation is the forward divergence on the prefixes of the training data's reference sequences: it equals
    ``prefixes="teacher"`` only when those data are samples from the teacher.

    Parameters
    ----------
    student, teacher : TinyLM
    divergence : {"forward", "reverse"}
    prefixes : {"teacher", "student"}

    Returns
    -------
    numpy.ndarray, shape (student.n_params,)
        With teacher prefixes and the forward divergence this equals the gradient of the sequence-level
        ``D(teacher || student)`` (the chain rule); on student prefixes neither sequence-level KL's.
    """
    _same_space(student, teacher)
    if divergence not in ("forward", "reverse"):
        raise ValueError(f"divergence must be 'forward' or 'reverse', got {divergence!r}")
    if prefixes not in ("teacher", "student"):
        raise ValueError(f"prefixes must be 'teacher' or 'student', got {prefixes!r}")
    mu = (teacher if prefixes == "teacher" else student).probs()
    ls, lt = student.conditionals(), teacher.conditionals()
    ps = np.exp(ls)
    if divergence == "forward":
        local = ps - np.exp(lt)  # d/dz of sum_v t_v (log t_v - log s_v), s = softmax(z)
    else:
        d = ls - lt
        local = ps * (d - np.sum(ps * d, axis=-1, keepdims=True))
    grad = np.zeros(student.logits.shape)
    ctx = student.contexts()
    for t in range(student.length):
        np.add.at(grad, ctx[:, t], mu[:, None] * local[:, t, :])
    return grad.ravel()


def distil_tokens(teacher: TinyLM, kind: str = "bigram", divergence: str = "forward",
                  prefixes: str = "teacher", *, n_steps: int = 300, lr: float = 0.1) -> DistillRun:
    """Token-level distillation with exact gradients (:func:`token_distillation_gradient`), from uniform.

    Returns
    -------
    DistillRun
        The student and, per step, the exact sequence-level forward and reverse KL.
    """
    n_steps = _positive_int("n_steps", n_steps)
    student = TinyLM.uniform(teacher.vocab_size, teacher.length, kind)
    opt = _Adam(student.logits.size, lr=lr)
    fwd, rev = [sequence_kl(teacher, student)], [sequence_kl(student, teacher)]
    for _ in range(n_steps):
        opt.step(student.logits.reshape(-1), token_distillation_gradient(student, teacher, divergence, prefixes))
        fwd.append(sequence_kl(teacher, student))
        rev.append(sequence_kl(student, teacher))
    return DistillRun(student, np.array(fwd), np.array(rev))
