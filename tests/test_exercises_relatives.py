"""Chapter 2 exercises: each checker accepts an answer computed here by an independent route and names the
misconceptions it targets. Independent routes: scikit-learn's ``mutual_info_score``, scipy, and sums written
out with ``math.log``."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import entropy as scipy_entropy
from sklearn.datasets import load_iris
from sklearn.metrics import mutual_info_score

from klcourse.exercises import evaluate, list_exercises
from klcourse.exercises.relatives import CHAIN_P, CHAIN_Q, JS_SHIFT, JS_WIDTH, PETAL_WIDTH_EDGES

LN2, LN10 = math.log(2), math.log(10)

IDS = {
    "relatives.nll-offset",
    "relatives.mi-bits",
    "relatives.mi-from-joint",
    "relatives.js-overlap",
    "relatives.chain-rule-term",
    "relatives.dpi-predict",
    "relatives.reverse-pinsker",
    "relatives.tv-bound",
    "relatives.renyi-two",
    "relatives.dv-bound",
    "relatives.cmi-xor",
}


def test_all_chapter_exercises_are_registered_with_mixed_kinds():
    exercises = list_exercises("relatives")
    assert {e.id for e in exercises} == IDS
    assert {"function", "number", "counterexample"} <= {e.kind for e in exercises}


@pytest.mark.parametrize("eid", sorted(IDS))
def test_unanswered_and_garbage_answers_get_a_sentence(eid):
    assert evaluate(eid, ...).status == "not answered"
    feedback = evaluate(eid, "not an answer")
    assert not feedback.passed and feedback.message


# ------------------------------------------------------------------ nll-offset
@pytest.mark.parametrize("wrong", ["model-entropy", "minimum-kl", "ln3"])
def test_nll_offset(wrong):
    assert evaluate("relatives.nll-offset", "Data-Conditional-Entropy ").passed
    feedback = evaluate("relatives.nll-offset", wrong)
    assert not feedback.passed and feedback.misconception == wrong


def test_nll_offset_claim_holds_for_a_random_conditional_model():
    """The fact the exercise teaches: NLL − D(P̂_XY ‖ P̂_X Q) = H(Y|X) of the data, whatever Q(y|x) is."""
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, size=300), rng.integers(0, 3, size=300)
    counts = np.zeros((4, 3))
    np.add.at(counts, (x, y), 1)
    joint = counts / counts.sum()
    h_y_given_x = scipy_entropy(joint.ravel()) - scipy_entropy(joint.sum(axis=1))
    for _ in range(5):
        model = rng.dirichlet(np.ones(3), size=4)
        nll = -np.mean(np.log(model[x, y]))
        kl = rel_entr(joint, joint.sum(axis=1, keepdims=True) * model).sum()
        assert nll - kl == pytest.approx(h_y_given_x, abs=1e-12)


# ------------------------------------------------------------------ mi-bits
def _iris_width_mi_nats():
    iris = load_iris()
    bins = np.digitize(iris.data[:, 3], PETAL_WIDTH_EDGES[1:-1])
    return mutual_info_score(iris.target, bins)   # natural log, computed from the labels


def test_mi_bits_accepts_the_sklearn_value_in_bits():
    assert evaluate("relatives.mi-bits", _iris_width_mi_nats() / LN2).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (lambda nats: nats, "nats"),
        (lambda nats: nats / LN10, "log10"),
        (lambda nats: math.inf, "reversed"),      # the product has mass where the joint is 0
        (lambda nats: math.log2(3), "entropy"),   # 50 flowers per species: H = log2 3 bits
    ],
)
def test_mi_bits_names_misconceptions(wrong, name):
    feedback = evaluate("relatives.mi-bits", wrong(_iris_width_mi_nats()))
    assert not feedback.passed and feedback.misconception == name


def test_mi_bits_rejects_an_unrelated_number_without_revealing_the_answer():
    right = _iris_width_mi_nats() / LN2
    feedback = evaluate("relatives.mi-bits", 0.7 * right)
    assert not feedback.passed and feedback.misconception is None
    assert f"{right:.3f}" not in feedback.message


# ------------------------------------------------------------------ mi-from-joint
def mi_via_entropies(joint):
    joint = np.asarray(joint, dtype=float)
    return scipy_entropy(joint.sum(axis=1)) + scipy_entropy(joint.sum(axis=0)) - scipy_entropy(joint.ravel())


def mi_in_bits(joint):
    return mi_via_entropies(joint) / LN2


def mi_naive(joint):   # 0 · log 0 → NaN
    joint = np.asarray(joint, dtype=float)
    product = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(joint * np.log(joint / product))


def mi_reversed(joint):
    joint = np.asarray(joint, dtype=float)
    product = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    return rel_entr(product, joint).sum()


def test_mi_from_joint_accepts_an_entropy_based_implementation():
    feedback = evaluate("relatives.mi-from-joint", mi_via_entropies)
    assert feedback.passed, feedback.message


def test_mi_from_joint_rejects_the_klcourse_reference():
    from klcourse import mutual_information

    assert evaluate("relatives.mi-from-joint", mutual_information).misconception == "klcourse-own"


@pytest.mark.parametrize(("wrong", "name"), [(mi_in_bits, "bits"), (mi_naive, "zero-cells"),
                                             (mi_reversed, "reversed")])
def test_mi_from_joint_names_misconceptions(wrong, name):
    feedback = evaluate("relatives.mi-from-joint", wrong)
    assert not feedback.passed and feedback.misconception == name


def test_mi_from_joint_rejects_a_number_and_a_crashing_function():
    assert evaluate("relatives.mi-from-joint", 0.5).status == "invalid"

    def crashes(joint):
        raise RuntimeError("boom")

    feedback = evaluate("relatives.mi-from-joint", crashes)
    assert not feedback.passed and "RuntimeError" in feedback.message


def test_mi_from_joint_rejects_marginal_entropy():
    feedback = evaluate("relatives.mi-from-joint", lambda j: scipy_entropy(np.asarray(j).sum(axis=1)))
    assert not feedback.passed and feedback.misconception is None


# ------------------------------------------------------------------ js-overlap
def _js_boxes_bits():
    """Box formula: the overlap contributes 0, each of the JS_SHIFT lone outcomes (1/w) log2 2."""
    return JS_SHIFT / JS_WIDTH


def test_js_overlap_accepts_the_box_formula_and_scipy():
    p, q = np.zeros(JS_WIDTH + JS_SHIFT), np.zeros(JS_WIDTH + JS_SHIFT)
    p[:JS_WIDTH], q[JS_SHIFT:] = 1 / JS_WIDTH, 1 / JS_WIDTH
    assert jensenshannon(p, q, base=2) ** 2 == pytest.approx(_js_boxes_bits(), rel=1e-12)
    assert evaluate("relatives.js-overlap", _js_boxes_bits()).passed
    assert evaluate("relatives.js-overlap", jensenshannon(p, q, base=2) ** 2).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (lambda b: b * LN2, "nats"),
        (lambda b: b * LN2 / LN10, "log10"),
        (math.sqrt, "js-distance"),
        (lambda b: 2 * b, "forgot-half"),
        (lambda b: math.inf, "infinite"),
    ],
)
def test_js_overlap_names_misconceptions(wrong, name):
    feedback = evaluate("relatives.js-overlap", wrong(_js_boxes_bits()))
    assert not feedback.passed and feedback.misconception == name


# ------------------------------------------------------------------ chain-rule-term
def _rows(table):
    return [[float(v) for v in row] for row in table]


def _kl_rows(first, second):
    """Conditional KL of each row, written out with math.log."""
    out = []
    for a, b in zip(first, second, strict=True):
        sa, sb = sum(a), sum(b)
        out.append(sum((u / sa) * math.log((u / sa) / (v / sb)) for u, v in zip(a, b, strict=True) if u > 0))
    return out


def _chain_quantities():
    p, q = _rows(CHAIN_P), _rows(CHAIN_Q)
    px, qx = [sum(r) for r in p], [sum(r) for r in q]
    cond = _kl_rows(p, q)
    return {
        "right": sum(w * d for w, d in zip(px, cond, strict=True)),
        "unweighted-sum": sum(cond),
        "unweighted-mean": sum(cond) / len(cond),
        "weighted-by-q": sum(w * d for w, d in zip(qx, cond, strict=True)),
        "swapped": sum(w * d for w, d in zip(qx, _kl_rows(q, p), strict=True)),
        "joint": float(rel_entr(np.array(p), np.array(q)).sum()),
        "marginal": float(rel_entr(np.array(px), np.array(qx)).sum()),
    }


def test_chain_rule_term_accepts_both_routes():
    values = _chain_quantities()
    assert values["joint"] - values["marginal"] == pytest.approx(values["right"], rel=1e-12)   # chain rule
    assert evaluate("relatives.chain-rule-term", values["right"]).passed
    assert evaluate("relatives.chain-rule-term", values["joint"] - values["marginal"]).passed


@pytest.mark.parametrize("name", ["unweighted-sum", "unweighted-mean", "weighted-by-q", "swapped", "joint"])
def test_chain_rule_term_names_misconceptions(name):
    values = _chain_quantities()
    assert abs(values[name] - values["right"]) > 1e-3 * values["right"]   # the trap is a real one here
    feedback = evaluate("relatives.chain-rule-term", values[name])
    assert not feedback.passed and feedback.misconception == name


def test_chain_rule_term_in_bits_is_recognised():
    feedback = evaluate("relatives.chain-rule-term", _chain_quantities()["right"] / LN2)
    assert feedback.misconception == "bits"


# ------------------------------------------------------------------ dpi-predict
@pytest.mark.parametrize("wrong", ["same-channel", "merge-outcomes", "none"])
def test_dpi_predict(wrong):
    assert evaluate("relatives.dpi-predict", "different-channels").passed
    feedback = evaluate("relatives.dpi-predict", wrong)
    assert not feedback.passed and feedback.misconception == wrong
    assert evaluate("relatives.dpi-predict", "maybe").status == "invalid"


def test_dpi_facts_behind_the_answer():
    """Same channel never increases KL (random trials); different channels can."""
    rng = np.random.default_rng(7)
    for _ in range(500):
        p, q = rng.dirichlet(np.ones(5), size=2)
        k = rng.dirichlet(np.full(3, 0.4), size=5)
        assert rel_entr(p @ k, q @ k).sum() <= rel_entr(p, q).sum() + 1e-12
    p, q = np.array([0.6, 0.4]), np.array([0.5, 0.5])
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert rel_entr(p, q @ swap).sum() == rel_entr(p, q).sum()   # a permutation keeps it
    assert rel_entr(p @ np.eye(2), q @ np.array([[1.0, 0.0], [0.9, 0.1]])).sum() > rel_entr(p, q).sum()


# ------------------------------------------------------------------ reverse-pinsker
@pytest.mark.parametrize(
    "pair",
    [([0.9, 0.1], [1.0, 0.0]), ([0.9, 0.1], [1 - 1e-6, 1e-6]), ([0.5, 0.45, 0.05], [0.5, 0.5 - 1e-12, 1e-12])],
)
def test_reverse_pinsker_accepts_counterexamples(pair):
    p, q = (np.array(v) for v in pair)
    assert 0.5 * np.abs(p - q).sum() <= 0.1 and rel_entr(p, q).sum() >= 1   # really a counterexample
    feedback = evaluate("relatives.reverse-pinsker", pair)
    assert feedback.passed, feedback.message


@pytest.mark.parametrize(
    ("pair", "phrase"),
    [(([0.5, 0.5], [0.4, 0.6]), "below"), (([0.9, 0.1], [0.1, 0.9]), "above")],
)
def test_reverse_pinsker_rejects_non_counterexamples(pair, phrase):
    feedback = evaluate("relatives.reverse-pinsker", pair)
    assert not feedback.passed and phrase in feedback.message


@pytest.mark.parametrize("answer", [([0.5, 0.6], [0.5, 0.5]), ([0.5, 0.5], [0.2, 0.3, 0.5]), [0.5, 0.5],
                                    ([-0.1, 1.1], [0.5, 0.5])])
def test_reverse_pinsker_invalid_answers(answer):
    assert evaluate("relatives.reverse-pinsker", answer).status == "invalid"


# ------------------------------------------------------------------ plotting helper added for this chapter
def test_annotated_heatmap_writes_every_cell():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from klcourse.plotting import annotated_heatmap

    table = np.arange(6.0).reshape(2, 3) / 15
    fig, ax = plt.subplots()
    image = annotated_heatmap(ax, table, row_labels=["a", "b"], col_labels=["x", "y", "z"], fmt="{:.2f}")
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{v:.2f}" for v in table.ravel())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert np.allclose(image.get_array(), table)
    plt.close(fig)


# --------------------------------------------------------------------------- issue 9: boundary, float32, scipy
def test_reverse_pinsker_accepts_a_pair_exactly_on_the_tv_boundary():
    p, q = [0.1, 0.3, 0.6], [0.0, 0.4, 0.6]  # TV = 0.1 exactly; float64 makes it 0.10000000000000002
    assert 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True)) > 0.1
    fb = evaluate("relatives.reverse-pinsker", (p, q))
    assert fb.passed, fb.message


def test_reverse_pinsker_accepts_float32_tensors_and_arrays():
    import torch

    p, q = [0.1, 0.9], [1e-6, 1 - 1e-6]  # TV < 0.1, KL ≈ 1.06 nats
    assert float(rel_entr(p, q).sum()) > 1.0
    fb = evaluate("relatives.reverse-pinsker", (torch.tensor(p), torch.tensor(q)))
    assert fb.passed, fb.message
    assert evaluate("relatives.reverse-pinsker", (np.float32(p), np.array(q, dtype=np.float32))).passed


def test_js_overlap_recognises_scipy_jensenshannon_with_its_defaults():
    p, q = js_boxes()
    fb = evaluate("relatives.js-overlap", float(jensenshannon(p, q)))
    assert not fb.passed and fb.misconception == "scipy-jensenshannon"
    assert "square root" in fb.message and "jensenshannon" in fb.message
    assert evaluate("relatives.js-overlap", float(jensenshannon(p, q, base=2))).misconception == "js-distance"
    assert evaluate("relatives.js-overlap", float(jensenshannon(p, q, base=2)) ** 2).passed


def js_boxes():
    p, q = np.zeros(JS_WIDTH + JS_SHIFT), np.zeros(JS_WIDTH + JS_SHIFT)
    p[:JS_WIDTH], q[JS_SHIFT:] = 1 / JS_WIDTH, 1 / JS_WIDTH
    return p, q


# --------------------------------------------------------------------------- issue 13: chapter 2 in depth
def _tv_pair():
    from klcourse.exercises.relatives import TV_BOUND_P, TV_BOUND_Q

    return np.array(TV_BOUND_P), np.array(TV_BOUND_Q)


def _tv_values():
    """Every candidate answer of relatives.tv-bound, from scipy's rel_entr and the two formulas written out."""
    p, q = _tv_pair()
    kl, kl_rev = rel_entr(p, q).sum(), rel_entr(q, p).sum()
    return {
        "right": math.sqrt(1 - math.exp(-kl)),   # Bretagnolle–Huber: the smaller one at this KL
        "pinsker": math.sqrt(kl / 2),
        "trivial-one": 1.0,
        "forgot-sqrt": 1 - math.exp(-kl),
        "kl-in-bits": math.sqrt(1 - 2.0 ** (-kl / LN2 / LN2)),
        "reversed": math.sqrt(1 - math.exp(-kl_rev)),
        "tv-itself": 0.5 * np.abs(p - q).sum(),
    }


def test_tv_bound_accepts_bretagnolle_huber_which_beats_pinsker_here():
    values = _tv_values()
    assert values["right"] < values["pinsker"]   # the pair is in the regime the exercise is about
    assert values["tv-itself"] <= values["right"]   # and the bound holds
    assert evaluate("relatives.tv-bound", values["right"]).passed
    assert evaluate("relatives.tv-bound", round(values["right"], 3)).passed


@pytest.mark.parametrize("name", ["pinsker", "trivial-one", "forgot-sqrt", "kl-in-bits", "reversed", "tv-itself"])
def test_tv_bound_names_misconceptions(name):
    values = _tv_values()
    feedback = evaluate("relatives.tv-bound", values[name])
    assert not feedback.passed and feedback.misconception == name
    assert f"{values['right']:.3f}" not in feedback.message


def _renyi_values():
    from klcourse.exercises.relatives import RENYI_P, RENYI_Q

    p, q = np.array(RENYI_P), np.array(RENYI_Q)
    chi2 = np.sum((p - q) ** 2 / q)
    return {
        "right": math.log(np.sum(p**2 / q)),
        "chi2": chi2,
        "forgot-log": 1 + chi2,
        "kl": rel_entr(p, q).sum(),
        "order-half": -2 * math.log(np.sum(np.sqrt(p * q))),
        "swapped": math.log(np.sum(q**2 / p)),
        "bits": math.log2(np.sum(p**2 / q)),
    }


def test_renyi_two_accepts_log_one_plus_chi2():
    values = _renyi_values()
    assert values["right"] == pytest.approx(math.log1p(values["chi2"]), rel=1e-14)
    assert evaluate("relatives.renyi-two", values["right"]).passed
    assert evaluate("relatives.renyi-two", round(values["right"], 3)).passed


@pytest.mark.parametrize("name", ["chi2", "forgot-log", "kl", "order-half", "swapped", "bits"])
def test_renyi_two_names_misconceptions(name):
    feedback = evaluate("relatives.renyi-two", _renyi_values()[name])
    assert not feedback.passed and feedback.misconception == name


def test_renyi_two_negative_answer_gets_the_sentence():
    feedback = evaluate("relatives.renyi-two", -0.3)
    assert not feedback.passed and "never negative" in feedback.message


def _dv_values():
    """The problem data drawn as the statement says, and the candidate answers with scipy's logsumexp."""
    from scipy.special import logsumexp

    from klcourse.exercises.relatives import DV_CRITIC_A, DV_CRITIC_B, DV_N, DV_SEED

    rng = np.random.default_rng(DV_SEED)
    x, y = rng.normal(0.0, 1.0, DV_N), rng.normal(1.0, 1.0, DV_N)
    t_p, t_q = DV_CRITIC_A + DV_CRITIC_B * x, DV_CRITIC_A + DV_CRITIC_B * y
    lme = lambda t: logsumexp(t) - math.log(t.size)   # noqa: E731
    return {
        "right": t_p.mean() - lme(t_q),
        "wrong-sample-set": t_p.mean() - lme(t_p),
        "samples-swapped": t_q.mean() - lme(t_p),
        "nwj": t_p.mean() - np.exp(t_q - 1).mean(),
        "forgot-log": t_p.mean() - np.exp(t_q).mean(),
        "mean-of-log": t_p.mean() - t_q.mean(),
        "bits": (t_p.mean() - lme(t_q)) / LN2,
    }


def test_dv_bound_accepts_the_sample_bound_which_lies_below_the_kl():
    values = _dv_values()
    assert 0 < values["right"] < 0.5 + 0.1   # D(N(0, 1) ‖ N(1, 1)) = 1/2; the critic is log p/q
    assert evaluate("relatives.dv-bound", values["right"]).passed


@pytest.mark.parametrize("name", ["wrong-sample-set", "samples-swapped", "nwj", "forgot-log", "mean-of-log", "bits"])
def test_dv_bound_names_misconceptions(name):
    values = _dv_values()
    feedback = evaluate("relatives.dv-bound", values[name])
    assert not feedback.passed and feedback.misconception == name


def test_dv_bound_with_p_samples_twice_is_never_positive():
    """The fact the wrong-sample-set message states: E_P[T] − log E_P[e^T] ≤ 0 for every critic (Jensen)."""
    rng = np.random.default_rng(8)
    for _ in range(100):
        t = rng.normal(0, 3, 20)
        assert t.mean() - math.log(np.mean(np.exp(t))) <= 1e-12


def _binary_entropy_bits(e):
    return -e * math.log2(e) - (1 - e) * math.log2(1 - e)


def test_cmi_xor_accepts_one_bit_minus_the_noise_entropy():
    from klcourse.exercises.relatives import CMI_FLIP, noisy_xor_joint

    right = 1 - _binary_entropy_bits(CMI_FLIP)   # H(Y | Z) − H(Y | X, Z)
    joint = noisy_xor_joint()
    h = lambda t: scipy_entropy(np.asarray(t).ravel(), base=2)   # noqa: E731
    by_entropies = h(joint.sum(axis=1)) + h(joint.sum(axis=0)) - h(joint) - h(joint.sum(axis=(0, 1)))
    assert by_entropies == pytest.approx(right, rel=1e-12)
    assert evaluate("relatives.cmi-xor", right).passed
    assert evaluate("relatives.cmi-xor", round(right, 3)).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (lambda e: 0.0, "unconditional"),
        (_binary_entropy_bits, "noise-entropy"),
        (lambda e: 1.0, "one-bit"),
        (lambda e: (1 - _binary_entropy_bits(e)) * LN2, "nats"),
    ],
)
def test_cmi_xor_names_misconceptions(wrong, name):
    from klcourse.exercises.relatives import CMI_FLIP

    feedback = evaluate("relatives.cmi-xor", wrong(CMI_FLIP))
    assert not feedback.passed and feedback.misconception == name
