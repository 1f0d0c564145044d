"""klcourse.divergences against independent routes: scipy, 100-digit mpmath, hypothesis properties.

The mpmath reference is the KL of the *exactly* normalised inputs, sum_i p_i/P log((p_i/P)/(q_i/Q))
with P, Q the exact (Fraction) sums, which is the quantity klcourse promises to return.
"""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr, xlogy
from scipy.stats import entropy as scipy_entropy

from klcourse import cross_entropy, entropy, f_divergence, js_divergence, kl_divergence, mutual_information

RNG = np.random.default_rng(0)
DELTAS = [1e-1, 1e-3, 1e-5, 1e-7, 1e-9, 1e-12, 1e-15]


def mp_kl(p, q, dps=100):
    """D(p/P || q/Q) at ``dps`` digits with exact sums; independent of klcourse."""
    with mpmath.workdps(dps):
        big_p = mpmath.mpf(sum(map(Fraction, p.tolist())).numerator) / sum(map(Fraction, p.tolist())).denominator
        big_q = mpmath.mpf(sum(map(Fraction, q.tolist())).numerator) / sum(map(Fraction, q.tolist())).denominator
        total = mpmath.mpf(0)
        for a, b in zip(p.tolist(), q.tolist(), strict=True):
            if a > 0:
                if b == 0:
                    return mpmath.inf
                pa, qb = mpmath.mpf(a) / big_p, mpmath.mpf(b) / big_q
                total += pa * mpmath.log(pa / qb)
        return total


def rel_err(value, ref):
    return float(abs(mpmath.mpf(value) - ref) / ref)


def stress_pair(n, delta, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n))
    q = p * (1.0 + delta * rng.standard_normal(n))
    return p, q / q.sum()


def dirichlet(n, size=None, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(n), size=size)


# --------------------------------------------------------------------------- against scipy


@pytest.mark.parametrize("base", [None, 2, 10])
def test_entropy_matches_scipy(base):
    p = dirichlet(7, size=(4, 3))
    np.testing.assert_allclose(entropy(p, base=base), scipy_entropy(p, base=base, axis=-1), rtol=1e-14)
    np.testing.assert_allclose(entropy(p.T, base=base, axis=0), scipy_entropy(p, base=base, axis=-1).T, rtol=1e-14)


def test_kl_matches_scipy_rel_entr_and_stats_entropy():
    p, q = dirichlet(50, size=6, seed=1), dirichlet(50, size=6, seed=2)
    p[:, :5] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(kl_divergence(p, q), rel_entr(p, q).sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(kl_divergence(p, q, base=2), scipy_entropy(p, q, base=2, axis=1), rtol=1e-13)
    np.testing.assert_allclose(kl_divergence(p.T, q.T, axis=0), scipy_entropy(p, q, axis=1), rtol=1e-13)


def test_kl_long_rows_span_several_blocks():
    p, q = dirichlet(70_000, size=3, seed=3), dirichlet(70_000, size=3, seed=4)
    q[0, :100] = p[0, :100]  # a few (near-)equal entries among many far ones
    q /= q.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(kl_divergence(p, q), scipy_entropy(p, q, axis=1), rtol=1e-12)


def test_kl_normalize_matches_scipy_on_counts():
    counts_p, counts_q = RNG.integers(0, 20, size=(5, 9)), RNG.integers(1, 20, size=(5, 9))
    np.testing.assert_allclose(
        kl_divergence(counts_p, counts_q, normalize=True), scipy_entropy(counts_p, counts_q, axis=1), rtol=1e-13
    )


def test_cross_entropy_matches_direct_formula():
    p, q = dirichlet(12, size=5, seed=5), dirichlet(12, size=5, seed=6)
    p[:, 0] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(cross_entropy(p, q), -xlogy(p, q).sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(cross_entropy(p, q, base=2), -xlogy(p, q).sum(axis=1) / np.log(2), rtol=1e-14)


@pytest.mark.parametrize("base", [None, 2])
def test_js_matches_scipy_jensenshannon_squared(base):
    p, q = dirichlet(10, size=8, seed=7), dirichlet(10, size=8, seed=8)
    p[:, :3] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    expected = jensenshannon(p, q, base=base, axis=1) ** 2
    np.testing.assert_allclose(js_divergence(p, q, base=base), expected, rtol=1e-12)


def test_broadcasting_and_return_types():
    p, q = dirichlet(5, seed=9), dirichlet(5, size=(2, 3), seed=10)
    batched = kl_divergence(p, q)
    assert isinstance(batched, np.ndarray) and batched.shape == (2, 3)
    np.testing.assert_allclose(batched, scipy_entropy(np.broadcast_to(p, q.shape), q, axis=-1), rtol=1e-13)
    for value in (kl_divergence(p, q[0, 0]), entropy(p), cross_entropy(p, p), js_divergence(p, p),
                  f_divergence(p, q[0, 0], "tv"), mutual_information(np.outer(p, p))):
        assert type(value) is float
    assert kl_divergence([0.5, 0.5], (0.25, 0.75)) == pytest.approx(rel_entr([0.5, 0.5], [0.25, 0.75]).sum())


# --------------------------------------------------------------------------- exactness against mpmath


@pytest.mark.parametrize("n", [3, 200])
@pytest.mark.parametrize("seed", [0, 1])
def test_kl_exact_on_nearly_identical_distributions(n, seed):
    worst = 0.0
    for delta in [*DELTAS, 0.0]:  # delta = 0: q is p renormalised, D ~ 1e-33, still exact
        p, q = stress_pair(n, delta, seed)
        ref = mp_kl(p, q)
        value = kl_divergence(p, q)
        assert value >= 0.0
        if ref == 0:
            assert value == 0.0
        else:
            worst = max(worst, rel_err(value, ref))
    assert worst <= 1e-13


def test_textbook_formula_fails_on_the_stress_set():
    """The stress set is meaningful: the naive sum loses every digit (and can go negative)."""
    p, q = stress_pair(200, 1e-9, 0)
    naive = float(np.sum(p * np.log(p / q)))
    assert rel_err(naive, mp_kl(p, q)) > 1e-3


def test_identical_inputs_give_exactly_zero():
    p = dirichlet(1000, seed=11)
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(p, p.copy(), base=2) == 0.0
    assert js_divergence(p, p) == 0.0
    counts = RNG.integers(1, 100, size=30).astype(float)
    assert kl_divergence(counts, 3.0 * counts, normalize=True) == 0.0  # same distribution, other total


@pytest.mark.parametrize("scale", [3.0, 1e5])
def test_kl_exact_for_nearly_proportional_counts(scale):
    """normalize=True with different totals triggers the error-free-product route."""
    p, q = stress_pair(100, 1e-8, 5)
    ref = mp_kl(p, q * scale)
    assert rel_err(kl_divergence(p, q * scale, normalize=True), ref) <= 1e-13


def test_kl_exact_when_ratio_underflows_or_overflows():
    cases = [([0.5, 0.5], [1.0, 1e-320]), ([1.0, 1e-320], [0.5, 0.5]), ([0.25, 0.75], [1.0, 3e-310])]
    for p, q in cases:
        p, q = np.array(p), np.array(q)
        ref = mp_kl(p, q, dps=400)  # sums like 1 + 1e-320 need ~330 digits
        assert rel_err(kl_divergence(p, q), ref) <= 1e-13


def mp_normalised(x, dps):
    """Entries of x divided by their exact sum, as mpmath numbers."""
    total = sum(map(Fraction, x.tolist()))
    with mpmath.workdps(dps):
        big = mpmath.mpf(total.numerator) / total.denominator
        return [mpmath.mpf(a) / big for a in x.tolist()]


def test_js_exact_on_nearly_identical_distributions():
    worst = 0.0
    for delta in (1e-1, 1e-3, 1e-6, 1e-9, 1e-12):
        p, q = stress_pair(50, delta, 2)
        with mpmath.workdps(100):
            ph, qh = mp_normalised(p, 100), mp_normalised(q, 100)
            ref = mpmath.fsum(
                a * mpmath.log(2 * a / (a + b)) / 2 + b * mpmath.log(2 * b / (a + b)) / 2
                for a, b in zip(ph, qh, strict=True)
            )
        worst = max(worst, rel_err(js_divergence(p, q), ref))
    assert worst <= 1e-13


# --------------------------------------------------------------------------- edge cases


def test_support_mismatch_and_zero_terms():
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-15)
    assert kl_divergence([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert cross_entropy([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert entropy([1.0, 0.0, 0.0]) == 0.0
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2), rel=1e-15)
    rows = kl_divergence([[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.25, 0.75]])
    assert rows[0] == math.inf and np.isfinite(rows[1])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kl", math.inf),  # D(P || Q): p_2 > 0 = q_2
        ("reverse_kl", math.log(2)),  # D(Q || P) = 1 * log(1 / 0.5)
        ("tv", 0.5),
        ("chi2", math.inf),
        ("hellinger", 1 - math.sqrt(0.5)),
        ("js", 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2)) + 0.5 * math.log(1 / 0.75)),
    ],
)
def test_f_divergence_limits_when_q_vanishes(name, expected):
    assert f_divergence([0.5, 0.5], [1.0, 0.0], name) == pytest.approx(expected, rel=1e-14)


CALLABLES = {
    "kl": lambda t: t * np.log(t),
    "reverse_kl": lambda t: -np.log(t),
    "tv": lambda t: 0.5 * np.abs(t - 1),
    "hellinger": lambda t: 0.5 * (np.sqrt(t) - 1) ** 2,
    "chi2": lambda t: (t - 1) ** 2,
    "js": lambda t: 0.5 * (t * np.log(t) - (1 + t) * np.log((1 + t) / 2)),
}


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_named_f_divergences_equal_their_generators(name):
    """Closed forms (names) vs the generic sum_i q_i f(p_i/q_i) with the generator, incl. zeros."""
    p, q = dirichlet(8, size=4, seed=12), dirichlet(8, size=4, seed=13)
    p[0, 0], q[1, 1] = 0.0, 0.0
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(f_divergence(p, q, name), f_divergence(p, q, CALLABLES[name]), rtol=1e-12)


def test_slope_at_infinity_survives_overflow_inside_the_generator():
    """(t - 1)**2 / (t + 1) overflows at t = 1e300 although f(t)/t -> 1: the q = 0 term is p * 1, not inf."""
    def triangular(t):
        return (t - 1) ** 2 / (t + 1)

    # 1 * f(0.5) + 0.5 * f'(inf) with f(0.5) = 0.25 / 1.5 and f'(inf) = 1
    assert f_divergence([0.5, 0.5], [1.0, 0.0], triangular) == pytest.approx(0.25 / 1.5 + 0.5, rel=1e-12)
    assert f_divergence([0.5, 0.5], [1.0, 0.0], lambda t: (t - 1) ** 2) == math.inf      # superlinear
    assert f_divergence([0.5, 0.5], [1.0, 0.0], lambda t: t * np.log(t)) == math.inf
    assert f_divergence([0.5, 0.5], [1.0, 0.0], lambda t: np.exp(t) - np.e) == math.inf  # overflows at once


def test_hellinger_convention_is_one_minus_bhattacharyya():
    p, q = dirichlet(6, seed=14), dirichlet(6, seed=15)
    assert f_divergence(p, q, "hellinger") == pytest.approx(1 - np.sum(np.sqrt(p * q)), rel=1e-13)
    assert f_divergence([1.0, 0.0], [0.0, 1.0], "hellinger") == 1.0


def test_total_variation_and_chi2_closed_forms():
    p, q = dirichlet(6, seed=16), dirichlet(6, seed=17)
    assert f_divergence(p, q, "tv") == pytest.approx(0.5 * np.abs(p - q).sum(), rel=1e-14)
    assert f_divergence(p, q, "chi2") == pytest.approx(np.sum(p**2 / q) - 1, rel=1e-12)


def test_mutual_information():
    joint = dirichlet(12, seed=18).reshape(3, 4)
    h = scipy_entropy(joint.sum(1)) + scipy_entropy(joint.sum(0)) - scipy_entropy(joint.ravel())
    assert mutual_information(joint) == pytest.approx(h, rel=1e-12)
    assert mutual_information(joint, base=2) == pytest.approx(h / math.log(2), rel=1e-12)
    px, py = dirichlet(3, seed=19), dirichlet(5, seed=20)
    assert abs(mutual_information(np.outer(px, py))) <= 1e-15
    assert mutual_information(np.diag([0.25] * 4)) == pytest.approx(math.log(4), rel=1e-15)


# --------------------------------------------------------------------------- bad input


FUNCS_PQ = {
    "kl": kl_divergence,
    "cross_entropy": cross_entropy,
    "js": js_divergence,
    "f_tv": lambda p, q, **kw: f_divergence(p, q, "tv", **kw),
    "f_callable": lambda p, q, **kw: f_divergence(p, q, CALLABLES["chi2"], **kw),
}
GOOD = [0.5, 0.5]
BAD = {
    "negative": ([-0.1, 1.1], "negative"),
    "nan": ([np.nan, 1.0], "NaN"),
    "inf": ([np.inf, 0.5], "inf"),
    "not normalised": ([0.3, 0.3], "sum to 1"),
    "text": (["a", "b"], "numeric"),
    "scalar": (0.5, "1-D"),
}


@pytest.mark.parametrize("func", sorted(FUNCS_PQ))
@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("position", ["p", "q"])
def test_bad_probability_vectors(func, bad, position):
    value, message = BAD[bad]
    args = (value, GOOD) if position == "p" else (GOOD, value)
    with pytest.raises(ValueError, match=message):
        FUNCS_PQ[func](*args)


@pytest.mark.parametrize("func", sorted(FUNCS_PQ))
def test_shape_mismatch(func):
    with pytest.raises(ValueError, match="shape mismatch"):
        FUNCS_PQ[func]([0.5, 0.5], [0.2, 0.3, 0.5])


@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_input_to_entropy_and_mutual_information(bad):
    value, message = BAD[bad]
    with pytest.raises(ValueError, match=message):
        entropy(value)
    if bad != "scalar":
        with pytest.raises(ValueError, match=message):
            mutual_information([value, value])


@pytest.mark.parametrize("base", [0, 1, -2, "two", np.nan, np.inf, True])
def test_invalid_base(base):
    for call in (lambda: entropy(GOOD, base=base), lambda: kl_divergence(GOOD, GOOD, base=base),
                 lambda: cross_entropy(GOOD, GOOD, base=base), lambda: js_divergence(GOOD, GOOD, base=base),
                 lambda: mutual_information(np.full((2, 2), 0.25), base=base)):
        with pytest.raises(ValueError, match="base"):
            call()


def test_normalize_flag():
    with pytest.raises(ValueError, match="normalize=True"):
        kl_divergence([1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="sums to 0"):
        kl_divergence([0, 0], [1, 1], normalize=True)
    with pytest.raises(ValueError, match="negative"):
        kl_divergence([-1, 2], [1, 1], normalize=True)
    assert kl_divergence([1, 3], [2, 2], normalize=True) == pytest.approx(scipy_entropy([1, 3], [2, 2]), rel=1e-15)


def test_unknown_or_invalid_f():
    with pytest.raises(ValueError, match="unknown f"):
        f_divergence(GOOD, GOOD, "bhattacharyya")
    with pytest.raises(ValueError, match="unknown f"):
        f_divergence(GOOD, GOOD, 3)
    with pytest.raises(ValueError, match=r"f\(1\) = 0"):
        f_divergence(GOOD, GOOD, lambda t: t)
    with pytest.raises(ValueError, match="NaN"):
        f_divergence([0.5, 0.5], [0.25, 0.75], lambda t: np.where(t > 1, np.nan, 0.0))


def test_mutual_information_needs_a_table():
    with pytest.raises(ValueError, match="2-D"):
        mutual_information([0.5, 0.5])
    with pytest.raises(ValueError, match="2-D"):
        mutual_information(np.full((2, 2, 2), 0.125))


def test_empty_and_bad_axis():
    with pytest.raises(ValueError, match="empty"):
        kl_divergence([], [])
    with pytest.raises(ValueError):
        kl_divergence(GOOD, GOOD, axis=3)


# --------------------------------------------------------------------------- hypothesis properties


def _normalised(x):
    return x / x.sum()


prob_vectors = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)),
        hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)),
    )
).filter(lambda pq: pq[0].sum() > 0 and pq[1].sum() > 0).map(lambda pq: (_normalised(pq[0]), _normalised(pq[1])))

tame_vectors = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=st.one_of(st.just(0.0), st.floats(1e-12, 1.0))),
        hnp.arrays(np.float64, n, elements=st.one_of(st.just(0.0), st.floats(1e-12, 1.0))),
    )
).filter(lambda pq: pq[0].sum() > 0 and pq[1].sum() > 0).map(lambda pq: (_normalised(pq[0]), _normalised(pq[1])))

positive_vectors = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=st.floats(1e-6, 1.0)),
        hnp.arrays(np.float64, n, elements=st.floats(1e-6, 1.0)),
    )
).map(lambda pq: (_normalised(pq[0]), _normalised(pq[1])))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(prob_vectors)
def test_divergences_are_nonnegative_and_bounded(pq):
    p, q = pq
    assert kl_divergence(p, q) >= 0.0
    assert kl_divergence(p, p) == 0.0
    assert 0.0 <= js_divergence(p, q) <= math.log(2) * (1 + 1e-15)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), rel=1e-12, abs=1e-60)
    for name in ("tv", "hellinger"):
        assert 0.0 <= f_divergence(p, q, name) <= 1.0 + 1e-15
    assert f_divergence(p, q, "chi2") >= 0.0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(prob_vectors)
def test_kl_equals_cross_entropy_minus_entropy(pq):
    p, q = pq
    kl = kl_divergence(p, q)
    if math.isinf(kl):
        assert math.isinf(cross_entropy(p, q))
    else:
        assert kl == pytest.approx(cross_entropy(p, q) - entropy(p), abs=1e-12 * (1 + cross_entropy(p, q)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(tame_vectors)
def test_f_divergence_kl_equals_kl_divergence(pq):
    p, q = pq
    kl = kl_divergence(p, q)
    assert f_divergence(p, q, "kl") == kl
    generic = f_divergence(p, q, CALLABLES["kl"])
    assert generic == pytest.approx(kl, rel=1e-10, abs=1e-13) or math.isinf(kl) and math.isinf(generic)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(positive_vectors)
def test_pinsker_and_jsd_against_kl(pq):
    """Pinsker: TV <= sqrt(KL/2) (Cover & Thomas lemma 11.6.1).  Convexity of D in its second
    argument: D(P || M) <= D(P || Q)/2, hence JSD <= (D(P || Q) + D(Q || P)) / 4."""
    p, q = pq
    kl = kl_divergence(p, q)
    assert f_divergence(p, q, "tv") <= math.sqrt(kl / 2) * (1 + 1e-12) + 1e-15
    assert js_divergence(p, q) <= (kl + kl_divergence(q, p)) / 4 * (1 + 1e-12) + 1e-15


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
        lambda shape: st.tuples(
            hnp.arrays(np.float64, shape, elements=st.floats(1e-4, 1.0)),
            hnp.arrays(np.float64, shape, elements=st.floats(1e-4, 1.0)),
        )
    )
)
def test_chain_rule_and_mutual_information(tables):
    """D(p(x,y) || q(x,y)) = D(p(x) || q(x)) + sum_x p(x) D(p(y|x) || q(y|x)); I(X;Y) >= 0."""
    p, q = (t / t.sum() for t in tables)
    px, qx = p.sum(axis=1), q.sum(axis=1)
    conditional = kl_divergence(p / px[:, None], q / qx[:, None], axis=1)
    chain = kl_divergence(px, qx) + np.dot(px, np.atleast_1d(conditional))
    assert kl_divergence(p.ravel(), q.ravel()) == pytest.approx(chain, rel=1e-12, abs=1e-15)
    mi = mutual_information(p)
    assert mi >= 0.0
    assert mi <= min(entropy(px), entropy(p.sum(axis=0))) + 1e-12
