"""Exercises of chapter 10, "KL in language-model post-training" (``book/10_posttraining.ipynb``, slug
``posttraining``).

The chapter's setting lives here too: the reference model ``pi_ref`` (a bigram model over the tokens a, b, c,
sequences of 4 tokens), the reward and the penalty strength. The notebook reads them from this module, so the
statements, the chapter and the checkers cannot drift apart. Every expected value is computed by code (lazily),
never typed; ``tests/test_exercises_posttraining.py`` recomputes each by an independent route.

Conventions: the policy is ``pi``, the reference ``pi_ref``; the KL penalty is ``D(pi || pi_ref)``, an
expectation under the policy; natural logs (nats) unless the exercise says bits.
"""

from __future__ import annotations

import math

import numpy as np

from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Misconception,
    choice,
    function,
    number,
    swapped,
)
from klcourse.exercises.core import register
from klcourse.posttraining import TinyLM, kl_regularised_optimum, sequence_kl, toy_reward

# --------------------------------------------------------------------------- the chapter's setting
#: the tokens, and the number of tokens in a sequence
VOCAB = ("a", "b", "c")
LENGTH = 4
#: the reference model: bigram logits, rows = previous token a, b, c, then the start of the sequence
REF_LOGITS = (
    (0.3, 0.6, 0.0),
    (-0.4, 0.9, 0.2),
    (0.1, 0.5, 0.6),
    (0.0, 0.8, 0.4),
)
#: the reward: A_BONUS per token "a", minus REPEAT_PENALTY per token equal to the one before it
A_BONUS = 0.75
REPEAT_PENALTY = 1.0
#: the chapter's KL-penalty strength
BETA = 0.5

# --------------------------------------------------------------------------- data stated in the exercises
#: sequence-kl: a bigram policy (same layout as REF_LOGITS)
POLICY_LOGITS = (
    (0.9, 0.3, 0.2),
    (0.8, -0.2, 0.5),
    (1.0, 0.2, -0.3),
    (0.7, 0.5, 0.1),
)
#: optimum-prob: the sequence and the penalty strength
OPT_SEQUENCE = "abca"
OPT_BETA = 0.25
#: shaped-reward: one sampled response, its reward, its per-token log-probabilities, the penalty strength
SHAPED_REWARD = 1.2
SHAPED_LOGP = (-0.9, -1.4, -0.3, -2.1)  # log pi(y_t | y_<t)
SHAPED_LOGP_REF = (-1.1, -1.2, -0.9, -2.4)  # log pi_ref(y_t | y_<t)
SHAPED_BETA = 0.1
#: dpo-preference: log pi and log pi_ref of the chosen and the rejected response, and beta
DPO_LOGP = (-5.2, -6.0)  # (chosen, rejected)
DPO_LOGP_REF = (-6.1, -5.5)
DPO_BETA = 0.5
#: k3-gradient: the options
K3_OPTIONS = ("reverse", "forward", "zero")


def reference() -> TinyLM:
    """pi_ref: the bigram model with REF_LOGITS."""
    return TinyLM(np.array(REF_LOGITS), LENGTH, "bigram")


def rewards() -> np.ndarray:
    """R(y) of every sequence, in the order of ``reference().sequences()``."""
    return toy_reward(reference().sequences(), a_bonus=A_BONUS, repeat_penalty=REPEAT_PENALTY)


def sequence_index(text: str) -> int:
    """Index of a sequence such as ``"abca"`` in the enumeration (lexicographic order)."""
    if len(text) != LENGTH or any(ch not in VOCAB for ch in text):
        raise ValueError(f"a sequence is {LENGTH} letters from {''.join(VOCAB)}, got {text!r}")
    index = 0
    for ch in text:
        index = index * len(VOCAB) + VOCAB.index(ch)
    return index


def policy() -> TinyLM:
    return TinyLM(np.array(POLICY_LOGITS), LENGTH, "bigram")


# --------------------------------------------------------------------------- posttraining.sequence-kl
def sequence_kl_expected() -> float:
    """D(pi || pi_ref) over whole sequences (nats)."""
    return sequence_kl(policy(), reference())


def _first_token_kl() -> float:
    lp = np.log(_softmax(np.array(POLICY_LOGITS[-1])))
    lq = np.log(_softmax(np.array(REF_LOGITS[-1])))
    return float(np.sum(np.exp(lp) * (lp - lq)))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


register(
    "posttraining.sequence-kl",
    title="The KL divergence of the reference from a policy, over whole sequences",
    kind="number",
    checker=number(
        sequence_kl_expected,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: sequence_kl(reference(), policy())),
            Misconception("per-token-mean", lambda: sequence_kl_expected() / LENGTH,
                          "That is the sequence KL divided by the number of tokens: a per-token average. The "
                          "chain rule adds the per-token KLs, it does not average them."),
            Misconception("first-token", _first_token_kl,
                          "That is the KL of the first token only. Every position contributes its per-token "
                          "KL, averaged over the prefixes the policy produces."),
        ],
    ),
)

# --------------------------------------------------------------------------- posttraining.k3-gradient
register(
    "posttraining.k3-gradient",
    title="Which gradient does k3 in the loss follow?",
    kind="predict",
    checker=choice(
        "forward",
        K3_OPTIONS,
        explanations={
            "reverse": "The value of k3 on draws from the policy estimates the reverse KL D(π‖π_ref), but "
                       "autograd treats the draws as fixed data: the expected gradient of k3 is that of "
                       "D(π_ref‖π), the forward direction.",
            "zero": "That is k1: its expected gradient with the draws held fixed vanishes. k3 adds r − 1, "
                    "whose gradient −r·∇log π does not average to zero.",
        },
    ),
)


# --------------------------------------------------------------------------- posttraining.optimum-prob
def _tilted(exponent: np.ndarray, with_ref: bool = True, normalise: bool = True) -> float:
    a = (reference().log_probs() if with_ref else 0.0) + exponent
    w = np.exp(a - (np.logaddexp.reduce(a) if normalise else 0.0))
    return float(w[sequence_index(OPT_SEQUENCE)])


def optimum_prob_expected() -> float:
    probs, _ = kl_regularised_optimum(reference(), rewards(), OPT_BETA)
    return float(probs[sequence_index(OPT_SEQUENCE)])


register(
    "posttraining.optimum-prob",
    title="The probability of one sequence under the KL-regularised optimum",
    kind="number",
    checker=number(
        optimum_prob_expected,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("beta-times-r", lambda: _tilted(OPT_BETA * rewards()),
                          "The exponent is R/β, not β·R: a stronger penalty (larger β) keeps the policy nearer "
                          "the reference, so β divides the reward."),
            Misconception("sign", lambda: _tilted(-rewards() / OPT_BETA),
                          "Wrong sign in the exponent: the optimum moves probability towards high reward."),
            Misconception("forgot-reference", lambda: _tilted(rewards() / OPT_BETA, with_ref=False),
                          "The factor π_ref(y) is missing: the optimum tilts the reference, it does not "
                          "replace it."),
            Misconception("unnormalised", lambda: _tilted(rewards() / OPT_BETA, normalise=False),
                          "That is the unnormalised weight π_ref(y)·exp(R(y)/β): divide by Z, the sum of "
                          "these weights over all sequences."),
        ],
    ),
)


# --------------------------------------------------------------------------- posttraining.shaped-reward
def _log_ratio_tokens() -> np.ndarray:
    return np.array(SHAPED_LOGP) - np.array(SHAPED_LOGP_REF)


def shaped_reward_expected() -> float:
    """R(y) - beta * sum_t (log pi - log pi_ref)(y_t | y_<t): the total of InstructGPT's per-token rewards."""
    return float(SHAPED_REWARD - SHAPED_BETA * _log_ratio_tokens().sum())


register(
    "posttraining.shaped-reward",
    title="The KL-shaped reward of one response",
    kind="number",
    checker=number(
        shaped_reward_expected,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("sign", lambda: float(SHAPED_REWARD + SHAPED_BETA * _log_ratio_tokens().sum()),
                          "The penalty has the wrong sign: the policy pays β·log(π/π_ref) where it is more "
                          "likely than the reference, which is what keeps it near the reference."),
            Misconception("inverse-beta", lambda: float(SHAPED_REWARD - _log_ratio_tokens().sum() / SHAPED_BETA),
                          "β multiplies the log-ratio; it does not divide it (1/β appears in the optimum's "
                          "exponent R/β, not in the penalty)."),
            Misconception("per-token-mean", lambda: float(SHAPED_REWARD - SHAPED_BETA * _log_ratio_tokens().mean()),
                          "That averages the per-token log-ratios. The penalty of the response is their sum: "
                          "the sequence log-ratio log π(y) − log π_ref(y)."),
            Misconception("last-token", lambda: float(SHAPED_REWARD - SHAPED_BETA * _log_ratio_tokens()[-1]),
                          "Only the last token's penalty is counted. Every token is penalised; the reward R "
                          "comes at the last one."),
        ],
    ),
)


# --------------------------------------------------------------------------- posttraining.dpo-preference
def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def _implicit_gap(beta: float, with_ref: bool = True) -> float:
    (w, lo), (w_ref, lo_ref) = DPO_LOGP, DPO_LOGP_REF
    if not with_ref:
        w_ref = lo_ref = 0.0
    return beta * ((w - w_ref) - (lo - lo_ref))


def dpo_preference_expected() -> float:
    """sigmoid(beta [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)])."""
    return _sigmoid(_implicit_gap(DPO_BETA))


register(
    "posttraining.dpo-preference",
    title="The preference probability a DPO policy implies",
    kind="number",
    checker=number(
        dpo_preference_expected,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("forgot-beta", lambda: _sigmoid(_implicit_gap(1.0)),
                          "The implicit reward is β·log(π/π_ref): the factor β is missing."),
            Misconception("inverse-beta", lambda: _sigmoid(_implicit_gap(1 / DPO_BETA)),
                          "The implicit reward is β·log(π/π_ref), not log(π/π_ref)/β: invert R/β = log(π*/π_ref) "
                          "+ const by multiplying by β."),
            Misconception("direction", lambda: 1 - dpo_preference_expected(),
                          "That is the probability that the rejected response is preferred: the difference is "
                          "chosen minus rejected."),
            Misconception("forgot-reference", lambda: _sigmoid(_implicit_gap(DPO_BETA, with_ref=False)),
                          "The reference model is missing: the implicit reward is β·log(π/π_ref), a log-ratio, "
                          "not β·log π."),
        ],
    ),
)


# --------------------------------------------------------------------------- posttraining.optimum-kl-bits
def optimum_kl_bits_expected() -> float:
    """D(pi* || pi_ref) in bits at the chapter's beta."""
    probs, _ = kl_regularised_optimum(reference(), rewards(), BETA)
    return float(np.sum(probs * (np.log(probs) - reference().log_probs())) / math.log(2))


def _optimum_other(beta_exp: bool = False, forward: bool = False) -> float:
    ref = reference()
    a = ref.log_probs() + (BETA * rewards() if beta_exp else rewards() / BETA)
    log_p = a - np.logaddexp.reduce(a)
    if forward:
        return float(np.sum(ref.probs() * (ref.log_probs() - log_p)) / math.log(2))
    return float(np.sum(np.exp(log_p) * (log_p - ref.log_probs())) / math.log(2))


register(
    "posttraining.optimum-kl-bits",
    title="How far the optimum moves from the reference, in bits",
    kind="number",
    checker=number(
        optimum_kl_bits_expected,
        sigfigs=3,
        unit="bits",
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: _optimum_other(forward=True)),
            Misconception("beta-times-r", lambda: _optimum_other(beta_exp=True),
                          "That is the KL of a policy tilted by exp(β·R). The optimum is tilted by exp(R/β)."),
        ],
    ),
)


# --------------------------------------------------------------------------- posttraining.token-k3
def token_k3_reference(logp, logp_ref):
    """Per-response sum over tokens of k3, with log r_t = log pi_ref - log pi at each sampled token."""
    log_r = np.asarray(logp_ref, dtype=float) - np.asarray(logp, dtype=float)
    return np.sum(np.expm1(log_r) - log_r, axis=-1)


def token_k3_cases(rng: np.random.Generator) -> list[Case]:
    """Randomised and edge cases for ``token_k3(logp, logp_ref)`` with arrays of shape (batch, tokens)."""
    def logp(shape, scale=1.0):
        return -np.abs(scale * rng.standard_normal(shape)) - 0.05

    a = logp((5, 4))
    same = logp((3, 6))
    long = logp((2, 50))
    return [
        Case("a batch of 5 responses of 4 tokens", (a, logp((5, 4)))),
        Case("8 responses of 3 tokens", (logp((8, 3)), logp((8, 3)))),
        Case("identical policy and reference (every penalty 0)", (same, same.copy())),
        Case("a single response of 4 tokens, shape (1, 4)", (logp((1, 4)), logp((1, 4)))),
        Case("2 responses of 50 tokens", (long, long + 0.3 * rng.standard_normal((2, 50)))),
        Case("log-ratios up to ±3 per token", (a, a + rng.uniform(-3, 3, (5, 4)))),
    ]


def _quiet(fn):
    def wrapped(logp, logp_ref):
        with np.errstate(all="ignore"):
            return fn(logp, logp_ref)
    return wrapped


@_quiet
def _sequence_k3(logp, logp_ref):
    log_r = np.sum(np.asarray(logp_ref, float) - np.asarray(logp, float), axis=-1)
    return np.expm1(log_r) - log_r


@_quiet
def _token_k3_mean(logp, logp_ref):
    return token_k3_reference(logp, logp_ref) / np.shape(logp)[-1]


@_quiet
def _token_k3_swapped(logp, logp_ref):
    return token_k3_reference(logp_ref, logp)


@_quiet
def _token_k1(logp, logp_ref):
    return np.sum(np.asarray(logp, float) - np.asarray(logp_ref, float), axis=-1)


register(
    "posttraining.token-k3",
    title="Implement the per-token k3 penalty, summed over each response of a batch",
    kind="function",
    checker=function(
        token_k3_reference,
        token_k3_cases,
        name="token_k3",
        misconceptions=[
            Misconception("sequence-level", _sequence_k3,
                          "That is k3 of the whole response's log-ratio, k3(Σ_t log r_t). GRPO's penalty applies "
                          "k3 to each token's log-ratio and adds: Σ_t k3(log r_t). Both average to the sequence "
                          "KL, but they are different numbers."),
            Misconception("per-token-mean", _token_k3_mean,
                          "That averages over the tokens of each response. GRPO's published loss does divide by "
                          "the response's length (for responses of one length, a rescaling of β), but this "
                          "exercise asks for the sum over its tokens, whose expectation is the sequence KL "
                          "(the chain rule adds per-token KLs)."),
            Misconception("swapped", _token_k3_swapped,
                          "The roles of the two models are exchanged: the tokens come from the policy, so "
                          "r_t = π_ref/π, i.e. log r_t = logp_ref − logp."),
            Misconception("k1", _token_k1,
                          "That is the sum of k1 = log π − log π_ref. k3 adds r_t − 1 at each token: "
                          "(r_t − 1) − log r_t."),
        ],
    ),
)


# --------------------------------------------------------------------------- hints
def _register_hints() -> None:
    from klcourse.exercises.hints import HINTS

    HINTS.update({
        "posttraining.sequence-kl": (
            "Build both models with klcourse.posttraining.TinyLM(np.array(logits), 4, \"bigram\").",
            "D(π‖π_ref) over sequences is Σ_y π(y)·(log π(y) − log π_ref(y)): an expectation under the policy, "
            "the first argument. The chain rule gives the same number as a sum of per-token KLs.",
            "sequence_kl(policy, reference) in klcourse.posttraining computes it by enumeration; or sum "
            "probs() * (log_probs() - ref.log_probs()) yourself.",
        ),
        "posttraining.k3-gradient": (
            "Autograd differentiates k3 at the drawn sequences; the draws are data. Write ∇k3 with "
            "log r = log π_ref − log π and ∇log r = −∇log π.",
            "∇k3 = (1 − r)·∇log π. Average it under π: the term r·∇log π becomes a sum weighted by π_ref.",
            "Compare expected_loss_gradient(policy, ref, \"k3\") with kl_gradient(policy, ref, direction) for "
            "both directions.",
        ),
        "posttraining.optimum-prob": (
            "The maximiser of E_π[R] − β·D(π‖π_ref) over all distributions on sequences is π*(y) ∝ "
            "π_ref(y)·exp(R(y)/β).",
            "Use the exercise's β (pt_data.OPT_BETA), the reference's log_probs() and the rewards of all 81 "
            "sequences, then normalise over all of them.",
            "Find the sequence's row with pt_data.sequence_index(pt_data.OPT_SEQUENCE); subtract the maximum "
            "before exponentiating, or use kl_regularised_optimum.",
        ),
        "posttraining.shaped-reward": (
            "InstructGPT gives each token the reward −β·log(π/π_ref) of that token, and adds R at the last one.",
            "The total over the response is R − β·Σ_t (log π − log π_ref) at each token: a single-sample k1 "
            "estimate of the sequence KL, times β.",
            "np.sum of the per-token differences, times β, subtracted from R.",
        ),
        "posttraining.dpo-preference": (
            "DPO's policy defines an implicit reward β·log(π(y)/π_ref(y)), up to a constant that cancels in a "
            "difference.",
            "Bradley–Terry: P(y_w ≻ y_l) = σ(reward(y_w) − reward(y_l)) with σ the logistic function.",
            "Compute β·((log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)) and apply 1/(1 + exp(−z)).",
        ),
        "posttraining.token-k3": (
            "Work with log r_t = logp_ref − logp at every token: the tokens were drawn from the policy, so r is "
            "π_ref/π.",
            "k3 of one token is (r_t − 1) − log r_t; compute r_t − 1 as np.expm1(log_r) to keep small ratios "
            "accurate.",
            "Apply it elementwise to the (batch, tokens) array and sum over the last axis: one number per "
            "response, an array of shape (batch,).",
        ),
        "posttraining.optimum-kl-bits": (
            "Compute π* = kl_regularised_optimum(reference, rewards, β) at the chapter's β (pt_data.BETA).",
            "D(π*‖π_ref) is an expectation under π*, the first argument.",
            "Σ π*·(log π* − log π_ref) is in nats; divide by ln 2 for bits.",
        ),
    })


_register_hints()
