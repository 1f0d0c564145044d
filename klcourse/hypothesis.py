"""KL divergence as an error exponent: the Neyman-Pearson test, Stein's lemma and the method of types (chapter 1).

Conventions
-----------
* Natural logarithms: every log-probability and exponent is in **nats**.
* A test decides between the hypothesis ``P`` (the one whose error is held at a fixed level) and the
  alternative ``Q``. The type-I error is ``alpha = P(reject P)``, the type-II error is
  ``beta = Q(accept P)``. Stein's lemma says that the smallest ``beta_n`` with ``alpha_n <= alpha`` decays like
  ``exp(-n D(P || Q))``: the exponent is the divergence of ``Q`` from ``P``, the expectation under the
  hypothesis whose error is held fixed.
* Bernoulli distributions are given by their probability of a one, ``Bern(t) = (1 - t, t)``.
* Everything is exact (sums over the ``n + 1`` counts of ones, in log space), so probabilities far below the
  smallest double, such as ``beta_n`` for ``n = 5000``, are still returned as finite logs.
* Bad input raises ``ValueError`` naming the argument.

References
----------
Cover, T. M. & Thomas, J. A. (2006). *Elements of Information Theory*, 2nd ed., Wiley, ch. 11 (method of types,
Sanov's theorem, Stein's lemma: Theorems 11.1.4, 11.4.1 and 11.8.3).
Neyman, J. & Pearson, E. S. (1933). On the problem of the most efficient tests of statistical hypotheses.
*Phil. Trans. R. Soc. A* 231, 289-337.
Kullback, S. (1959). *Information Theory and Statistics*, Wiley (the mean information for discrimination).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp

__all__ = [
    "NeymanPearsonTest",
    "bernoulli_kl",
    "coin_tail_exponent",
    "log_binomial_tail",
    "neyman_pearson_bernoulli",
    "type_log_probability",
]


# --------------------------------------------------------------------------- validation
def _probability(t, name: str, *, open_interval: bool = True) -> float:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {type(t).__name__}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if open_interval and not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
    if not open_interval and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie between 0 and 1, got {value}")
    return value


def _sample_size(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a positive integer, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    return int(n)


def _log_binomial_pmf(n: int, t: float) -> np.ndarray:
    """log P(K = k) for K ~ Binomial(n, t), k = 0..n (t strictly inside (0, 1))."""
    k = np.arange(n + 1)
    log_choose = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return log_choose + k * math.log(t) + (n - k) * math.log1p(-t)


# --------------------------------------------------------------------------- divergences of coins
def bernoulli_kl(a, b) -> float:
    """D(Bern(a) || Bern(b)) in nats, exact, with the conventions of :func:`klcourse.kl_divergence`.

    Parameters
    ----------
    a, b : float
        Probabilities of a one, in [0, 1].

    Returns
    -------
    float
        ``a log(a/b) + (1 - a) log((1 - a)/(1 - b))``; terms with weight 0 count as 0, and the result is ``inf``
        when ``Bern(a)`` puts mass where ``Bern(b)`` has none.
    """
    a = _probability(a, "a", open_interval=False)
    b = _probability(b, "b", open_interval=False)
    total = 0.0
    for weight, other in ((a, b), (1.0 - a, 1.0 - b)):
        if weight == 0.0:
            continue
        if other == 0.0:
            return math.inf
        total += weight * math.log(weight / other)
    return max(total, 0.0)


# --------------------------------------------------------------------------- the Neyman-Pearson test
@dataclass(frozen=True)
class NeymanPearsonTest:
    """The most powerful level-``alpha`` test of ``P = Bern(p)`` against ``Q = Bern(q)`` from ``n`` tosses.

    The test looks at the number ``k`` of ones. In the direction of ``Q`` (more ones when ``q > p``, fewer when
    ``q < p``) it rejects ``P`` beyond ``threshold``, rejects with probability ``gamma`` exactly at it, and
    accepts ``P`` otherwise, so that its type-I error is exactly ``alpha``.
    """

    p: float
    q: float
    n: int
    alpha: float
    threshold: int
    gamma: float
    log_beta: float

    @property
    def beta(self) -> float:
        """The type-II error ``Q(accept P)`` (underflows to 0.0 far in the tail: use ``log_beta``)."""
        return math.exp(self.log_beta)

    def rejects(self, k, u) -> np.ndarray:
        """Decisions for counts of ones ``k`` and independent uniforms ``u`` in [0, 1): True = reject ``P``."""
        k = np.asarray(k)
        u = np.asarray(u, dtype=float)
        if k.shape != u.shape:
            raise ValueError(f"k and u must have the same shape, got {k.shape} and {u.shape}")
        if k.size and (np.any(k < 0) or np.any(k > self.n) or np.any(k != np.round(k))):
            raise ValueError(f"k must hold counts of ones between 0 and n = {self.n}")
        toward_q = k if self.q > self.p else self.n - k
        return (toward_q > self.threshold) | ((toward_q == self.threshold) & (u < self.gamma))


def neyman_pearson_bernoulli(p, q, n, alpha) -> NeymanPearsonTest:
    """The most powerful test of level ``alpha`` between ``Bern(p)`` and ``Bern(q)``, and its exact errors.

    By the Neyman-Pearson lemma the likelihood-ratio test, randomised at its threshold so that its type-I error
    is exactly ``alpha``, has the smallest type-II error of all tests with type-I error at most ``alpha``. For
    coins the likelihood ratio is monotone in the count of ones, so the test thresholds that count.

    Parameters
    ----------
    p : float
        The hypothesis ``P = Bern(p)`` whose error is held fixed, ``0 < p < 1``.
    q : float
        The alternative ``Q = Bern(q)``, ``0 < q < 1``, ``q != p``.
    n : int
        Number of independent tosses, ``n >= 1``.
    alpha : float
        Type-I error ``P(reject P)``, ``0 < alpha < 1``.

    Returns
    -------
    NeymanPearsonTest
        With ``log_beta``, the natural log of the type-II error ``Q(accept P)``, computed exactly in log space.

    Examples
    --------
    >>> test = neyman_pearson_bernoulli(0.5, 0.2, 100, 0.05)
    >>> round(-test.log_beta / 100, 3) > 0
    True
    """
    p = _probability(p, "p")
    q = _probability(q, "q")
    if p == q:
        raise ValueError("p and q must differ: a test between identical coins has no power")
    n = _sample_size(n)
    alpha = _probability(alpha, "alpha")
    # count in the direction of Q: j = k if q > p else n - k; under P and Q, j is binomial with these rates
    p_dir, q_dir = (p, q) if q > p else (1.0 - p, 1.0 - q)
    log_p = _log_binomial_pmf(n, p_dir)
    log_q = _log_binomial_pmf(n, q_dir)
    # P(J > j) for j = 0..n, summed from the top (exact tail sums, no 1 - cdf cancellation)
    p_pmf = np.exp(log_p)
    above = np.concatenate([np.cumsum(p_pmf[::-1])[::-1][1:], [0.0]])
    threshold = int(np.argmax(above <= alpha))  # the smallest j with P(J > j) <= alpha
    at = p_pmf[threshold]
    gamma = float(np.clip((alpha - above[threshold]) / at, 0.0, 1.0)) if at > 0 else 0.0
    # beta = Q(J < threshold) + (1 - gamma) Q(J = threshold)
    terms = log_q[: threshold + 1].copy()
    if gamma >= 1.0:
        terms[threshold] = -np.inf
    else:
        terms[threshold] += math.log1p(-gamma)
    log_beta = float(logsumexp(terms)) if np.isfinite(terms).any() else -math.inf
    return NeymanPearsonTest(p, q, n, alpha, threshold, gamma, log_beta)


# --------------------------------------------------------------------------- the method of types
def type_log_probability(counts, p) -> float:
    """log of the probability that ``n`` draws from ``P`` have exactly the type ``counts / n``.

    The type class of ``counts`` holds ``n! / prod(k_i!)`` sequences, each of probability ``prod(p_i ** k_i)``.
    Cover and Thomas (Theorem 11.1.4) bound it by
    ``(n + 1) ** -len(p) * exp(-n D(T || P)) <= P^n(T) <= exp(-n D(T || P))`` with ``T = counts / n``.

    Parameters
    ----------
    counts : array_like of int
        How often each outcome occurs; non-negative integers, not all zero.
    p : array_like
        The distribution ``P`` over the same outcomes (sums to 1).

    Returns
    -------
    float
        The natural log of the probability (``-inf`` when a count is positive where ``p`` is 0).
    """
    try:
        k = np.asarray(counts, dtype=float)
        p = np.asarray(p, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("counts and p must be numeric vectors") from None
    if k.ndim != 1 or p.ndim != 1 or k.shape != p.shape:
        raise ValueError(f"counts and p must be 1-D vectors of the same length, got shapes {k.shape} and {p.shape}")
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(p))):
        raise ValueError("counts and p must be finite")
    if np.any(k < 0) or np.any(k != np.round(k)) or k.sum() == 0:
        raise ValueError("counts must be non-negative integers, not all zero")
    if np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
        raise ValueError("p must be a probability vector (entries >= 0 summing to 1)")
    if np.any((k > 0) & (p == 0)):
        return -math.inf
    n = k.sum()
    used = k > 0
    return float(gammaln(n + 1) - gammaln(k + 1).sum() + np.sum(k[used] * np.log(p[used])))


def log_binomial_tail(n, p, t) -> float:
    """log P(K / n >= t) for the number of ones ``K`` in ``n`` tosses of ``Bern(p)``, exact.

    Parameters
    ----------
    n : int
        Number of tosses, ``n >= 1``.
    p : float
        Probability of a one, ``0 < p < 1``.
    t : float
        Threshold on the empirical frequency of ones, ``0 <= t <= 1``.

    Returns
    -------
    float
        The natural log of the tail probability; 0.0 when ``t <= 0``. For ``t > p`` Sanov's theorem gives
        ``log P(K/n >= t) / n -> -D(Bern(t) || Bern(p))`` (:func:`coin_tail_exponent`).
    """
    n = _sample_size(n)
    p = _probability(p, "p")
    t = _probability(t, "t", open_interval=False)
    # the smallest count k with k / n >= t; the tolerance keeps k = n t when n t is an integer up to rounding
    k_min = max(0, math.ceil(n * t - 1e-9))
    return float(logsumexp(_log_binomial_pmf(n, p)[k_min:]))


def coin_tail_exponent(p, t) -> float:
    """Sanov's exponent of ``P(K / n >= t)`` for tosses of ``Bern(p)``: ``min D(Bern(s) || Bern(p))`` over ``s >= t``.

    The closed set ``{s >= t}`` is convex, so the minimum is at its point nearest to ``p``: ``D(Bern(t) ||
    Bern(p))`` when ``t > p``, and 0 when ``t <= p`` (the event is then not rare).

    Parameters
    ----------
    p : float
        Probability of a one, ``0 < p < 1``.
    t : float
        Threshold on the empirical frequency, ``0 <= t <= 1``.

    Returns
    -------
    float
        The exponent in nats.
    """
    p = _probability(p, "p")
    t = _probability(t, "t", open_interval=False)
    return bernoulli_kl(t, p) if t > p else 0.0
