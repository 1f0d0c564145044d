"""The chapter-10 exercises accept right answers computed here by independent routes (token-by-token
enumeration, hand arithmetic) and name each recognised misconception."""

import itertools
import math

import numpy as np
from scipy.special import log_softmax

from klcourse.exercises import evaluate, list_exercises
from klcourse.exercises import posttraining as ex
from klcourse.exercises.hints import HINTS


def verdict(exercise, answer):
    return evaluate(f"posttraining.{exercise}", answer)


def bigram_log_probs(logits):
    """log pi(y) of every sequence in lexicographic order, token by token (row 3 = start)."""
    table = log_softmax(np.array(logits, dtype=float), axis=1)
    out = []
    for seq in itertools.product(range(3), repeat=4):
        prev, total = 3, 0.0
        for tok in seq:
            total += table[prev, tok]
            prev = tok
        out.append(total)
    return np.array(out)


def hand_rewards():
    out = []
    for seq in itertools.product("abc", repeat=4):
        repeats = sum(a == b for a, b in zip(seq[:-1], seq[1:], strict=True))
        out.append(ex.A_BONUS * seq.count("a") - ex.REPEAT_PENALTY * repeats)
    return np.array(out)


def kl(lp, lq):
    return float(np.sum(np.exp(lp) * (lp - lq)))


def tilt(log_ref, exponent):
    a = log_ref + exponent
    return a - np.logaddexp.reduce(a)


def test_six_exercises_with_hints():
    exercises = list_exercises("posttraining")
    assert len(exercises) >= 6
    assert {e.kind for e in exercises} >= {"number", "predict", "function"}
    for e in exercises:
        assert 2 <= len(HINTS[e.id]) <= 3, e.id


def test_setting_matches_hand_enumeration():
    assert np.allclose(ex.rewards(), hand_rewards())
    assert np.allclose(ex.reference().log_probs(), bigram_log_probs(ex.REF_LOGITS))
    assert ex.sequence_index("abca") == list(itertools.product("abc", repeat=4)).index(tuple("abca"))


def test_unanswered_and_malformed_answers_get_a_sentence():
    assert verdict("sequence-kl", ...).status == "not answered"
    assert verdict("sequence-kl", "big").status == "invalid"
    assert verdict("k3-gradient", 1).status == "invalid"
    assert verdict("k3-gradient", "sideways").status == "invalid"
    assert verdict("dpo-preference", [0.1, 0.2]).status == "invalid"


def test_sequence_kl():
    lp, lq = bigram_log_probs(ex.POLICY_LOGITS), bigram_log_probs(ex.REF_LOGITS)
    right = kl(lp, lq)
    assert verdict("sequence-kl", right).passed
    assert verdict("sequence-kl", round(right, 3)).passed
    assert verdict("sequence-kl", kl(lq, lp)).misconception == "swapped"
    assert verdict("sequence-kl", right / 4).misconception == "per-token-mean"
    first_p = log_softmax(np.array(ex.POLICY_LOGITS[3]))
    first_q = log_softmax(np.array(ex.REF_LOGITS[3]))
    assert verdict("sequence-kl", kl(first_p, first_q)).misconception == "first-token"
    assert verdict("sequence-kl", right / math.log(2)).misconception == "bits"
    assert not verdict("sequence-kl", -right).passed
    assert not verdict("sequence-kl", right * 1.1).passed


def test_k3_gradient():
    assert verdict("k3-gradient", "forward").passed
    assert verdict("k3-gradient", " Forward ").passed
    for wrong in ("reverse", "zero"):
        v = verdict("k3-gradient", wrong)
        assert not v.passed and v.misconception == wrong and len(v.message) > 40


def test_optimum_prob():
    log_ref, r, b = bigram_log_probs(ex.REF_LOGITS), hand_rewards(), ex.OPT_BETA
    i = list(itertools.product("abc", repeat=4)).index(tuple(ex.OPT_SEQUENCE))
    right = math.exp(tilt(log_ref, r / b)[i])
    assert verdict("optimum-prob", right).passed
    assert verdict("optimum-prob", math.exp(tilt(log_ref, b * r)[i])).misconception == "beta-times-r"
    assert verdict("optimum-prob", math.exp(tilt(log_ref, -r / b)[i])).misconception == "sign"
    assert verdict("optimum-prob", math.exp(tilt(0 * log_ref, r / b)[i])).misconception == "forgot-reference"
    assert verdict("optimum-prob", math.exp(log_ref[i] + r[i] / b)).misconception == "unnormalised"
    assert not verdict("optimum-prob", right * 1.05).passed


def test_shaped_reward():
    ratio = [a - b for a, b in zip(ex.SHAPED_LOGP, ex.SHAPED_LOGP_REF, strict=True)]
    R, b = ex.SHAPED_REWARD, ex.SHAPED_BETA
    right = R - b * sum(ratio)
    assert verdict("shaped-reward", right).passed
    assert verdict("shaped-reward", R + b * sum(ratio)).misconception == "sign"
    assert verdict("shaped-reward", R - sum(ratio) / b).misconception == "inverse-beta"
    assert verdict("shaped-reward", R - b * sum(ratio) / 4).misconception == "per-token-mean"
    assert verdict("shaped-reward", R - b * ratio[-1]).misconception == "last-token"
    assert not verdict("shaped-reward", R).passed


def test_dpo_preference():
    (w, lo), (w_ref, lo_ref), b = ex.DPO_LOGP, ex.DPO_LOGP_REF, ex.DPO_BETA

    def sig(z):
        return 1 / (1 + math.exp(-z))

    gap = (w - w_ref) - (lo - lo_ref)
    right = sig(b * gap)
    assert verdict("dpo-preference", right).passed
    assert verdict("dpo-preference", sig(gap)).misconception == "forgot-beta"
    assert verdict("dpo-preference", sig(gap / b)).misconception == "inverse-beta"
    assert verdict("dpo-preference", 1 - right).misconception == "direction"
    assert verdict("dpo-preference", sig(b * (w - lo))).misconception == "forgot-reference"
    assert not verdict("dpo-preference", 0.5).passed


def test_optimum_kl_bits():
    log_ref, r, b = bigram_log_probs(ex.REF_LOGITS), hand_rewards(), ex.BETA
    log_star = tilt(log_ref, r / b)
    right = kl(log_star, log_ref) / math.log(2)
    assert verdict("optimum-kl-bits", right).passed
    assert verdict("optimum-kl-bits", right * math.log(2)).misconception == "nats"
    assert verdict("optimum-kl-bits", kl(log_ref, log_star) / math.log(2)).misconception == "swapped"
    wrong_tilt = tilt(log_ref, b * r)
    assert verdict("optimum-kl-bits", kl(wrong_tilt, log_ref) / math.log(2)).misconception == "beta-times-r"
    assert not verdict("optimum-kl-bits", -right).passed


def test_hints_never_contain_the_expected_values():
    values = {
        "sequence-kl": ex.sequence_kl_expected(),
        "optimum-prob": ex.optimum_prob_expected(),
        "shaped-reward": ex.shaped_reward_expected(),
        "dpo-preference": ex.dpo_preference_expected(),
        "optimum-kl-bits": ex.optimum_kl_bits_expected(),
    }
    for name, v in values.items():
        text = " ".join(HINTS[f"posttraining.{name}"])
        for digits in (2, 3, 4):
            assert f"{v:.{digits}f}" not in text, (name, digits)


def hand_token_k3(logp, logp_ref):
    """Sum over tokens of (r - 1) - log r, r = pi_ref / pi, written with math.exp, row by row."""
    out = []
    for row, row_ref in zip(np.asarray(logp), np.asarray(logp_ref), strict=True):
        total = 0.0
        for a, b in zip(row, row_ref, strict=True):
            log_r = float(b - a)
            total += math.exp(log_r) - 1 - log_r
        out.append(total)
    return np.array(out)


def test_token_k3_function():
    assert verdict("token-k3", hand_token_k3).passed

    def sequence_level(lp, lr):
        s = np.sum(np.asarray(lr) - np.asarray(lp), axis=-1)
        return np.exp(s) - 1 - s

    assert verdict("token-k3", sequence_level).misconception == "sequence-level"
    assert verdict("token-k3", lambda lp, lr: hand_token_k3(lp, lr) / np.shape(lp)[1]).misconception \
        == "per-token-mean"
    assert verdict("token-k3", lambda lp, lr: hand_token_k3(lr, lp)).misconception == "swapped"
    assert verdict("token-k3", lambda lp, lr: np.sum(np.asarray(lp) - np.asarray(lr), axis=-1)).misconception \
        == "k1"
    batch_mean = verdict("token-k3", lambda lp, lr: float(hand_token_k3(lp, lr).mean()))
    assert batch_mean.status == "invalid" and "shape" in batch_mean.message
    assert verdict("token-k3", 0.5).status == "invalid"
    assert not verdict("token-k3", lambda lp, lr: 1.01 * hand_token_k3(lp, lr)).passed
