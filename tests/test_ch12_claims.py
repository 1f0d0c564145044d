"""The claims of chapters 1-2 (issue 9, items 3, 4, 6, 7), each checked by an independent route.

* the triangle-inequality excess identity, against 50-digit mpmath, and its Bernoulli characterisation
  by exact enumeration of a grid (the sign is decided by exact rational comparisons);
* the Shannon-code interval [H + D, H + D + 1), and a Huffman code that leaves it;
* block coding brings the waste per symbol to within 1/k of the KL divergence (enumeration of blocks);
* a consistent log10 gives hartleys, never a negative value; mixing bases does;
* f-divergences with zeros in q: the limit f'(inf) keeps them non-negative;
* maximum likelihood for continuous data: the population identity, and the empirical form diverging;
* the direction wording of the chapters and the notation page.
"""

import heapq
import itertools
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from scipy import integrate, stats

from klcourse import cross_entropy, entropy, f_divergence, js_divergence, kl_divergence

ROOT = Path(__file__).resolve().parents[1]
CH1, CH2 = ROOT / "book" / "01_definitions.ipynb", ROOT / "book" / "02_relatives.ipynb"


# --------------------------------------------------------------------------- ch 1: triangle inequality


def mp_excess(p, q, r):
    """sum (p - q) log(q / r) at 50 digits, independent of klcourse."""
    with mpmath.workdps(50):
        return sum((mpmath.mpf(a) - mpmath.mpf(b)) * mpmath.log(mpmath.mpf(b) / mpmath.mpf(c))
                   for a, b, c in zip(p, q, r, strict=True))


def test_triangle_excess_identity_against_mpmath():
    rng = np.random.default_rng(0)
    for _ in range(30):
        p, q, r = rng.dirichlet(np.ones(5), size=3)
        lhs = kl_divergence(p, r) - kl_divergence(p, q) - kl_divergence(q, r)
        assert abs(lhs - float(mp_excess(p, q, r))) < 1e-14


def test_bernoulli_triangle_fails_exactly_when_q_lies_strictly_between():
    """Every triple of a 49-point grid: klcourse's excess is > 0 iff t_Q is strictly between (exact test)."""
    n = 50
    grid = [Fraction(k, n) for k in range(1, n)]
    t = np.array([float(g) for g in grid])
    bern = np.stack([1 - t, t], axis=-1)
    P, Q, R = bern[:, None, None], bern[None, :, None], bern[None, None, :]
    excess = kl_divergence(P, R) - kl_divergence(P, Q) - kl_divergence(Q, R)
    between = np.zeros(excess.shape, dtype=bool)
    for i, j, k in itertools.product(range(len(grid)), repeat=3):
        between[i, j, k] = grid[i] < grid[j] < grid[k] or grid[i] > grid[j] > grid[k]
    assert between.sum() == 2 * math.comb(len(grid), 3)
    assert excess[between].min() > 1e-6          # fails, by a margin far above rounding
    assert excess[~between].max() < 1e-14        # holds (equality when Q = P or Q = R)
    # the closed form (t_P - t_Q)(logit t_Q - logit t_R) of the chapter
    logit = np.log(t / (1 - t))
    closed = (t[:, None, None] - t[None, :, None]) * (logit[None, :, None] - logit[None, None, :])
    np.testing.assert_allclose(excess, closed, atol=1e-13, rtol=0)


def test_midpoint_counterexample_of_the_exercise_solution():
    """Q the midpoint of P and R: every term of sum (p - q) log(q / r) is >= 0."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        p, r = rng.dirichlet(np.ones(4), size=2)
        q = (p + r) / 2
        assert float(mp_excess(p, q, r)) > 0
        assert kl_divergence(p, r) > kl_divergence(p, q) + kl_divergence(q, r)


# --------------------------------------------------------------------------- ch 1: coding


def huffman_lengths(probs):
    heap = [(pr, i, (i,)) for i, pr in enumerate(probs)]
    heapq.heapify(heap)
    lengths = [0] * len(probs)
    counter = len(probs)
    while len(heap) > 1:
        a, _, left = heapq.heappop(heap)
        b, _, right = heapq.heappop(heap)
        for i in left + right:
            lengths[i] += 1
        heapq.heappush(heap, (a + b, counter, left + right))
        counter += 1
    return np.array(lengths)


def test_shannon_code_for_q_costs_between_h_plus_d_and_h_plus_d_plus_one():
    rng = np.random.default_rng(2)
    for _ in range(300):
        p, q = rng.dirichlet(np.full(7, 0.7), size=2)
        lengths = np.ceil(-np.log2(q))
        assert np.sum(2.0 ** -lengths) <= 1.0                     # Kraft: a prefix code exists
        mean_len = float(np.sum(p * lengths))
        low = -float(np.sum(p * np.log2(p))) + float(np.sum(p * np.log2(p / q)))  # H(P) + D(P||Q)
        assert low - 1e-12 <= mean_len < low + 1


def test_huffman_code_for_q_can_exceed_h_plus_d_plus_one():
    """The chapter's example: the ceiling is H(P) + D + 1, and Huffman's code for Q breaks it."""
    fib = np.array([55, 34, 21, 13, 8, 5, 3, 2, 1, 1], dtype=float)
    q = fib / fib.sum()
    p = np.zeros(10)
    p[-3:] = 1 / 3
    huff = float(np.sum(p * huffman_lengths(q)))
    ceiling = entropy(p, base=2) + kl_divergence(p, q, base=2) + 1
    assert ceiling == pytest.approx(cross_entropy(p, q, base=2) + 1, abs=1e-12)
    assert huff > ceiling
    assert float(np.sum(p * np.ceil(-np.log2(q)))) < ceiling      # the Shannon code stays inside


@pytest.mark.parametrize("k", [1, 2, 5, 10, 14])
def test_block_shannon_code_waste_tends_to_kl(k):
    """Blocks of k tosses, every block enumerated: D(Q||P) <= waste per toss < D(Q||P) + 1/k."""
    code_for, source = (0.9, 0.1), (0.5, 0.5)   # a code for the biased coin, used on a fair coin
    total = 0.0
    for block in itertools.product((0, 1), repeat=k):
        prob_code = math.prod(code_for[b] for b in block)
        prob_src = math.prod(source[b] for b in block)
        total += prob_src * math.ceil(-math.log2(prob_code))
    waste = (total - k * 1.0) / k                 # H(fair coin) = 1 bit per toss
    d = kl_divergence(source, code_for, base=2)
    assert d <= waste < d + 1 / k
    if k == 1:
        assert waste == 1.5                        # lengths 1 and 4: the integer-length figure


# --------------------------------------------------------------------------- ch 1-2: units


def test_consistent_log10_is_never_negative_but_mixed_bases_are():
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(6), size=(2, 3000))
    hartleys = np.sum(p * np.log10(p / q), axis=1)
    assert hartleys.min() >= 0
    np.testing.assert_allclose(hartleys, stats.entropy(p, q, base=10, axis=1), rtol=1e-12)
    np.testing.assert_allclose(hartleys, kl_divergence(p, q) / np.log(10), rtol=1e-12)
    mixed = -np.sum(p * np.log10(q), axis=1) + np.sum(p * np.log(p), axis=1)   # H(P,Q) log10 - H(P) nats
    assert np.mean(mixed < 0) > 0.5
    # the Gaussian formula of chapter 1 with log10 in its log term only
    sigma = np.linspace(0.4, 0.99, 50)
    assert np.all(0.5 * (sigma**2 - 1) - np.log10(sigma) < 0)
    assert np.all(0.5 * (sigma**2 - 1) - np.log(sigma) > 0)


# --------------------------------------------------------------------------- ch 2: f-divergences, q = 0


GENERATORS = {  # generator, f'(inf) = lim f(t)/t
    "tv": (lambda t: 0.5 * np.abs(t - 1), 0.5),
    "hellinger": (lambda t: 0.5 * (np.sqrt(t) - 1) ** 2, 0.5),
    "js": (lambda t: 0.5 * (t * np.log(t) - (1 + t) * np.log((1 + t) / 2)), math.log(2) / 2),
    "triangular": (lambda t: (t - 1) ** 2 / (t + 1), 1.0),
    "reverse_kl": (lambda t: -np.log(t), 0.0),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_f_divergence_with_zeros_in_q_is_nonnegative_via_the_slope_at_infinity(name):
    f, slope = GENERATORS[name]
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.ones(5), size=(2, 300))
    q[:, :2] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    m = p[:, :2].sum(axis=1)
    values = f_divergence(p, q, f)
    bound = f(1 - m) + m * slope
    assert np.all(bound >= -1e-12) and np.all(values >= bound - 1e-12)
    # the convention gives the right value: direct sum over q > 0 plus p f'(inf) where q = 0
    direct = np.sum(q[:, 2:] * f(p[:, 2:] / q[:, 2:]), axis=1) + m * slope
    np.testing.assert_allclose(values, direct, rtol=1e-12, atol=1e-15)
    if name == "reverse_kl":                       # f'(inf) = 0: D_f(P||Q) = D(Q||P), finite
        np.testing.assert_allclose(values, kl_divergence(q, p), rtol=1e-12)


def test_gan_value_at_the_optimal_discriminator_is_2js_minus_ln4():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p, q = rng.dirichlet(np.ones(6), size=2)
        value = np.sum(p * np.log(p / (p + q))) + np.sum(q * np.log(q / (p + q)))
        assert value == pytest.approx(2 * js_divergence(p, q) - math.log(4), abs=1e-13)


# --------------------------------------------------------------------------- ch 2: MLE for continuous data


def test_population_nll_identity_and_monte_carlo_convergence():
    """E_P[-log q] = h(P) + D(P||Q) for P = Laplace(0, 1), Q = N(0.3, 1.5^2): closed form, quadrature, MC."""
    mu, sd = 0.3, 1.5
    laplace = stats.laplace()
    closed_cross = 0.5 * math.log(2 * math.pi * sd**2) + (2.0 + mu**2) / (2 * sd**2)   # Var = 2
    h = 1 + math.log(2)
    kl_quad = integrate.quad(lambda x: laplace.pdf(x) * (laplace.logpdf(x) - stats.norm.logpdf(x, mu, sd)),
                             -80, 80, points=[0.0], limit=200)[0]   # tails beyond |x| = 80: < 1e-30
    assert laplace.entropy() == pytest.approx(h, rel=1e-12)
    assert closed_cross == pytest.approx(h + kl_quad, abs=1e-9)
    for seed in range(3):
        x = laplace.rvs(200_000, random_state=np.random.default_rng(seed))
        nll = -stats.norm.logpdf(x, mu, sd)
        assert abs(nll.mean() - closed_cross) < 4.5 * nll.std() / math.sqrt(len(x))


def test_empirical_kl_of_a_density_model_grows_like_log_inverse_width():
    """D(binned P_n || binned Q) -> inf as the bins shrink: + ln 100 per factor 100, once every point is alone."""
    x = stats.gamma(3.0).rvs(500, random_state=np.random.default_rng(6))
    values = []
    for width in (1e-6, 1e-8, 1e-10):
        cell, counts = np.unique(np.floor(x / width), return_counts=True)
        assert len(cell) == len(x)
        q_cell = np.diff(stats.norm.cdf(np.stack([cell, cell + 1]) * width, 2.5, 2.0), axis=0)[0]
        values.append(kl_divergence(np.r_[counts / counts.sum(), 0.0], np.r_[q_cell, 1 - q_cell.sum()]))
    np.testing.assert_allclose(np.diff(values), math.log(100), atol=1e-3)
    own = -stats.norm.logpdf(x, 2.5, 2.0).mean() - math.log(len(x)) - math.log(1e-10)
    assert values[-1] == pytest.approx(own, abs=1e-3)


# --------------------------------------------------------------------------- wording


def markdown_text(nb_path):
    cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
    text = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return re.sub(r"\s+", " ", text)


OLD_PHRASES = [  # each was in chapter 1, 2 or the notation page before issue 9
    r"from the product of (its|the) marginals",
    r"of \$P\$ from \$Q\$ is",
    r"from the data distribution \$\\hat P\$ to",
    r"from the data to the",
    r"KL from independence",
    r"KL between (?!\$A\$)",
    r"is the divergence from",
    r"three conventions, each a limit",
    r"pays more than \$D_\{\\mathrm\{KL\}\}\(P\\,\\\|\\,Q\) \+ 1\$",
    r"`np\.log10` gives neither",
    r"Maximum-likelihood models \(flows, autoregressive models\) are the ones that minimise the forward KL of",
    r"locally like a squared distance",
]


@pytest.mark.parametrize("path", [CH1, CH2, ROOT / "book" / "notation.md"], ids=lambda p: p.name)
def test_old_wording_is_gone(path):
    text = markdown_text(path) if path.suffix == ".ipynb" else re.sub(r"\s+", " ", path.read_text("utf-8"))
    for phrase in OLD_PHRASES:
        assert not re.search(phrase, text), f"{path.name}: {phrase!r}"


def test_one_phrasing_for_mutual_information_and_f_divergences():
    notation = re.sub(r"\s+", " ", (ROOT / "book" / "notation.md").read_text("utf-8"))
    ch2 = markdown_text(CH2)
    for text in (notation, ch2):
        assert "the KL divergence of the product of the marginals from the joint" in text
    assert "the $f$-divergence of $Q$ from $P$" in notation
    assert "the **$f$-divergence** of $Q$ from $P$" in ch2
    assert "thm-mle-kl" in ch2 and "eq-nll-population" in ch2
    assert "finite or countable set" in ch2          # the condition of Thm 2.1
