"""Accuracy and speed of klcourse's KL functions next to the usual ways of computing them.

Run ``.venv/bin/python benchmarks/accuracy.py`` (about 30 s on 2 cores).  It prints tables;
it asserts nothing (the assertions live in ``tests/``).

Columns
-------
worst rel err   max |D - D_ref| / D_ref over the stress set, D_ref from mpmath at 60 digits
                computed from the very same float64 inputs (so it measures the method, not
                the input rounding); a nonzero answer where D_ref = 0 counts as inf.
share < 0       fraction of results that are negative (KL never is).
max |D(P||P)|   largest |D| over pairs of identical distributions (should be exactly 0).
err/((κ+1)u)    (univariate, pairs with D > 0) worst relative error divided by (kappa + 1) u:
                kappa the problem's relative condition number
                (klcourse.numerics.kl_normal_condition), u = eps/2.  Rounding the inputs can
                cost kappa u, rounding the result u.  At most a few for a (mixed) stable method;
                far above it means the algorithm, not the problem, lost the digits.
0 where D > 0   (univariate) share of pairs returned as exactly 0 although D > 0.
time            wall time of one vectorised call on the whole batch (min of a few runs).

Sections: univariate normals (20,000 seeded pairs), diagonal normals, the VAE KL term,
multivariate normals (speed at d = 1000, accuracy at condition number 1e8; ``kl_mvn``'s
two routes, ``method='cholesky'`` and ``method='eig'``, next to the ``'auto'`` default), and the
discrete-distribution rows from ``benchmarks/discrete.py``.
"""

from __future__ import annotations

import math
import sys
import time
from functools import partial
from pathlib import Path

import mpmath as mp
import numpy as np
import scipy.linalg
import scipy.stats
import torch

from klcourse import kl_diag_normal, kl_mvn, kl_normal, vae_kl
from klcourse.numerics import gaussian_stress_set, kl_normal_condition

REPO = Path(__file__).resolve().parent.parent
N_PAIRS = 20_000
DPS = 60
mp.mp.dps = DPS
torch.set_num_threads(2)


# ----------------------------------------------------------------------------- helpers
def best_time(fn, repeats=5):
    """Min wall time of ``repeats`` calls and the last result."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rel_errors(values, ref):
    values, ref = np.asarray(values, dtype=float), np.asarray(ref, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(values - ref) / ref
    err = np.where(ref == 0, np.where(values == 0, 0.0, np.inf), err)
    return np.where(np.isfinite(values), err, np.inf)


def accuracy_row(method, values, ref, seconds, identical=None):
    values = np.asarray(values, dtype=float)
    return {
        "method": method,
        "worst_rel_err": float(np.max(rel_errors(values, ref))),
        "share_negative": float(np.mean(values < 0)),
        "max_abs_self": None if identical is None else float(np.max(np.abs(identical))),
        "seconds": seconds,
    }


def fmt(value, kind):
    if value is None:
        return "—"
    if kind == "share":
        return f"{100 * value:.2f} %"
    if kind == "time":
        return f"{1e3 * value:.2f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.1e}"


COLUMNS = [
    ("worst_rel_err", "worst rel err", "err"),
    ("share_negative", "share < 0", "share"),
    ("max_abs_self", "max |D(P||P)|", "err"),
    ("seconds", "time", "time"),
]


def print_table(title, rows, note="", extra=()):
    """Rows are dicts keyed like :data:`COLUMNS` (missing keys print as a dash); ``extra``
    adds (key, header, kind) columns on the right."""
    columns = COLUMNS + list(extra)
    print(f"\n{title}")
    if note:
        print(f"  {note}")
    widths = [max(15, len(head) + 2) for _, head, _ in columns]
    header = f"  {'method':<62}" + "".join(f"{head:>{w}}" for (_, head, _), w in zip(columns, widths, strict=True))
    print(header)
    print("  " + "-" * (len(header) - 2))
    for row in rows:
        cells = "".join(f"{fmt(row.get(key), kind):>{w}}" for (key, _, kind), w in zip(columns, widths, strict=True))
        print(f"  {row.get('method', '?'):<62}{cells}")


# ------------------------------------------------------------------- univariate stress set
def normal_stress_set(n=N_PAIRS, seed=0):
    """Five equal groups of (mu0, sigma0, mu1, sigma1) pairs, seeded.

    A: sigma0 and sigma1/sigma0 log-uniform over e^[-20, 20], mean gaps e^[-5, 5] sigma1;
    B: sigma1 = sigma0 (1 + eps), |eps| in 1e-16..1e-6, mean gap 0 or 1e-12..1e-6 sigma0;
    C: sigma1 = sigma0, mean gap 1e-12..1 sigma0;
    D: as A but mean gaps 1e2..1e8 sigma1;
    E: |log(sigma1/sigma0)| log-uniform in 1e-8..1.

    The generator lives in :func:`klcourse.numerics.gaussian_stress_set` (chapter 5 scores a
    small version of the same set in the book).
    """
    return gaussian_stress_set(n, seed)


def mp_kl_normal(m0, s0, m1, s1):
    """Textbook formula in 60-digit arithmetic on the exact float64 inputs (list of mpf)."""
    out = []
    half = mp.mpf(1) / 2
    for a, b, c, d in zip(m0.tolist(), s0.tolist(), m1.tolist(), s1.tolist(), strict=True):
        a, b, c, d = mp.mpf(a), mp.mpf(b), mp.mpf(c), mp.mpf(d)
        out.append(mp.log(d / b) + (b * b + (a - c) ** 2) / (2 * d * d) - half)
    return out


def textbook_kl_normal(m0, s0, m1, s1):
    return np.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5


def scipy_kl_normal(m0, s0, m1, s1):
    # scipy has no Gaussian KL; cross-entropy minus entropy, both from scipy.stats.norm:
    # H(P, Q) = -log q(mu0) + s0^2 / (2 s1^2), H(P) = norm(mu0, s0).entropy().
    cross = -scipy.stats.norm.logpdf(m0, loc=m1, scale=s1) + s0**2 / (2 * s1**2)
    return cross - scipy.stats.norm.entropy(loc=m0, scale=s0)


def torch_kl_normal(m0, s0, m1, s1):
    t = [torch.from_numpy(np.ascontiguousarray(a)) for a in (m0, s0, m1, s1)]
    p, q = torch.distributions.Normal(t[0], t[1]), torch.distributions.Normal(t[2], t[3])
    return torch.distributions.kl_divergence(p, q).numpy()


UNIVARIATE_METHODS = [
    ("klcourse.kl_normal", kl_normal),
    ("textbook formula, numpy", textbook_kl_normal),
    ("scipy.stats: -norm.logpdf + s0²/2s1² - norm.entropy", scipy_kl_normal),
    ("torch.distributions.kl_divergence(Normal, Normal), f64", torch_kl_normal),
]


def univariate_section():
    m0, s0, m1, s1 = normal_stress_set()
    t0 = time.perf_counter()
    ref_mp = mp_kl_normal(m0, s0, m1, s1)
    ref = np.array([float(v) for v in ref_mp])
    t_ref = time.perf_counter() - t0
    same = (m0[:1000], s0[:1000], m0[:1000], s0[:1000])  # identical pairs
    positive = ref > 0  # the condition number is infinite where D = 0
    # rounding the inputs (kappa u) and the result (u): what any float64 method may lose
    allowed = (kl_normal_condition(m0[positive], s0[positive], m1[positive], s1[positive]) + 1) * (
        np.finfo(np.float64).eps / 2)
    rows = []
    for name, fn in UNIVARIATE_METHODS:
        seconds, values = best_time(lambda fn=fn: fn(m0, s0, m1, s1))
        row = accuracy_row(name, values, ref, seconds, identical=fn(*same))
        # stability: error / ((condition number + 1) * unit roundoff); a stable method stays at a few
        row["worst_vs_kappa_u"] = float(np.max(rel_errors(values, ref)[positive] / allowed))
        row["false_zero"] = float(np.mean((np.asarray(values) == 0) & (ref > 0)))
        rows.append(row)
    print_table(
        f"Univariate normals D(N(m0,s0²) || N(m1,s1²)): {N_PAIRS:,} seeded stress pairs",
        rows,
        f"reference: mpmath {DPS} digits on all pairs ({t_ref:.1f} s); KL range {ref.min():.1e} .. {ref.max():.1e}; "
        "err/((κ+1)u): relative error over (condition number + 1) × unit roundoff (≤ a few: stable)",
        extra=[("worst_vs_kappa_u", "err/((κ+1)u)", "err"), ("false_zero", "0 where D > 0", "share")],
    )
    return (m0, s0, m1, s1), ref_mp


# ------------------------------------------------------------------ diagonal normals, VAE
def diag_section(params, ref_mp, dim=8):
    m0, s0, m1, s1 = (a.reshape(-1, dim) for a in params)
    ref = np.array([float(mp.fsum(ref_mp[i : i + dim])) for i in range(0, len(ref_mp), dim)])
    rows = []
    for name, fn in [
        ("klcourse.kl_diag_normal", kl_diag_normal),
        ("textbook formula summed, numpy", lambda *a: textbook_kl_normal(*a).sum(-1)),
    ]:
        seconds, values = best_time(lambda fn=fn: fn(m0, s0, m1, s1))
        rows.append(accuracy_row(name, values, ref, seconds, identical=fn(m0, s0, m0, s0)))
    print_table(f"Diagonal normals, d = {dim}: the same pairs grouped in {dim}s", rows)


def vae_stress_set(rows=N_PAIRS // 8, dim=8, seed=1):
    """(mu, logvar) of shape (rows, dim), seeded.  Odd rows: log-variances uniform in
    [-40, 40], means 0 or +-1e-12..1e2.  Even rows: nearly collapsed units, every
    log-variance within 1e-16..1e-4 of 0 and means 0 or +-1e-12..1e-4."""
    rng = np.random.default_rng(seed)
    shape = (rows, dim)
    sign = rng.choice([-1.0, 1.0], shape)
    logvar = rng.uniform(-40, 40, shape)
    mu = rng.choice([0.0, 1.0], shape) * sign * 10 ** rng.uniform(-12, 2, shape)
    logvar[::2] = (sign * 10 ** rng.uniform(-16, -4, shape))[::2]
    mu[::2] = (rng.choice([0.0, 1.0], shape) * sign * 10 ** rng.uniform(-12, -4, shape))[::2]
    return mu, logvar


def torch_vae_textbook(mu, logvar):
    mu, logvar = torch.from_numpy(mu), torch.from_numpy(logvar)
    return (-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1)).numpy()


def vae_section(dim=8):
    mu, logvar = vae_stress_set(dim=dim)
    ref = []
    for mrow, vrow in zip(mu.tolist(), logvar.tolist(), strict=True):
        terms = [mp.expm1(mp.mpf(v)) - mp.mpf(v) + mp.mpf(m) ** 2 for m, v in zip(mrow, vrow, strict=True)]
        ref.append(float(mp.fsum(terms) / 2))
    ref = np.array(ref)
    zeros = np.zeros_like(mu)
    methods = [
        ("klcourse.vae_kl, numpy", vae_kl),
        ("klcourse.vae_kl, torch f64", lambda m, v: vae_kl(torch.from_numpy(m), torch.from_numpy(v)).numpy()),
        ("textbook 0.5*sum(exp(v) + mu² - 1 - v), numpy", lambda m, v: 0.5 * np.sum(np.exp(v) + m**2 - 1 - v, -1)),
        ("textbook -0.5*sum(1 + v - mu² - exp(v)), torch f64", torch_vae_textbook),
    ]
    rows = []
    for name, fn in methods:
        seconds, values = best_time(lambda fn=fn: fn(mu, logvar))
        rows.append(accuracy_row(name, values, ref, seconds, identical=fn(zeros, zeros)))
    print_table(
        f"VAE KL term D(N(mu, diag e^v) || N(0, I)), d = {dim}, {len(ref):,} rows",
        rows,
        "max |D(P||P)| here: mu = 0, logvar = 0 (posterior equal to the prior)",
    )


# ------------------------------------------------------------------------- multivariate
def naive_kl_mvn(m0, c0, m1, c1):
    inv1 = np.linalg.inv(c1)
    dm = m1 - m0
    logdet = np.log(np.linalg.det(c1) / np.linalg.det(c0))
    return 0.5 * (np.trace(inv1 @ c0) + dm @ inv1 @ dm - len(m0) + logdet)


def scipy_cholesky_kl_mvn(m0, c0, m1, c1):
    l0, _ = scipy.linalg.cho_factor(c0, lower=True)
    l1, _ = scipy.linalg.cho_factor(c1, lower=True)
    m = scipy.linalg.solve_triangular(l1, np.tril(l0), lower=True)
    z = scipy.linalg.solve_triangular(l1, m1 - m0, lower=True)
    logdet = 2 * np.sum(np.log(np.diag(l1))) - 2 * np.sum(np.log(np.diag(l0)))
    return 0.5 * (np.sum(m * m) + z @ z - len(m0) + logdet)


def eigen_kl_mvn(m0, c0, m1, c1):
    w1, v1 = np.linalg.eigh(c1)
    w0 = np.linalg.eigvalsh(c0)
    b = v1.T @ c0 @ v1
    z = v1.T @ (m1 - m0)
    return 0.5 * (np.sum(np.diag(b) / w1) + np.sum(z**2 / w1) - len(m0) + np.sum(np.log(w1)) - np.sum(np.log(w0)))


def torch_kl_mvn(m0, c0, m1, c1):
    t = [torch.from_numpy(a) for a in (m0, c0, m1, c1)]
    p = torch.distributions.MultivariateNormal(t[0], covariance_matrix=t[1])
    q = torch.distributions.MultivariateNormal(t[2], covariance_matrix=t[3])
    return float(torch.distributions.kl_divergence(p, q))


MVN_METHODS = {
    "klcourse.kl_mvn (method='auto')": kl_mvn,
    "klcourse.kl_mvn, method='cholesky' (Cholesky form alone)": partial(kl_mvn, method="cholesky"),
    "klcourse.kl_mvn, method='eig' (eigenvalue form alone)": partial(kl_mvn, method="eig"),
    "naive numpy: inv + det": naive_kl_mvn,
    "plain scipy: cho_factor + solve_triangular": scipy_cholesky_kl_mvn,
    "eigen route: numpy eigh": eigen_kl_mvn,
    "torch MultivariateNormal kl_divergence, f64": torch_kl_mvn,
}


def random_spd(rng, d, cond):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.logspace(0, -math.log10(cond), d)
    rng.shuffle(eig)
    cov = (q * eig) @ q.T
    return (cov + cov.T) / 2


def mp_kl_mvn(m0, c0, m1, c1):
    a0, a1 = mp.matrix(c0.tolist()), mp.matrix(c1.tolist())
    dm = mp.matrix((m1 - m0).tolist())
    inv1 = mp.inverse(a1)
    trace = mp.fsum((inv1 * a0)[i, i] for i in range(len(m0)))
    quad = (dm.T * inv1 * dm)[0, 0]
    return float((trace + quad - len(m0) + mp.log(mp.det(a1)) - mp.log(mp.det(a0))) / 2)


def mvn_speed_section(d=1000, rounds=3):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    c0, c1 = a @ a.T / d + np.eye(d), 3 * (b @ b.T / d + np.eye(d))
    m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
    times, values = dict.fromkeys(MVN_METHODS, math.inf), {}
    for _ in range(rounds):  # interleaved, so background load hits every method alike
        for name, fn in MVN_METHODS.items():
            t0 = time.perf_counter()
            with np.errstate(all="ignore"):
                values[name] = fn(m0, c0, m1, c1)
            times[name] = min(times[name], time.perf_counter() - t0)
    rows = []
    for name, fn in MVN_METHODS.items():
        with np.errstate(all="ignore"):
            self_kl = fn(m0, c0, m0, c0)
        rows.append(
            {"method": f"{name}  (D = {values[name]:.8g})", "seconds": times[name],
             "max_abs_self": abs(self_kl) if np.isfinite(self_kl) else math.inf}
        )  # fmt: skip
    noise = rng.standard_normal((d, d))
    near = c0 * (1 + 1e-9 * (noise + noise.T) / 2)
    seconds, _ = best_time(lambda: kl_mvn(m0, c0, m0, near), repeats=3)
    rows.append({"method": "klcourse.kl_mvn, nearly equal pair (difference route)", "seconds": seconds})
    print_table(
        f"Multivariate normals, d = {d}: time (min of {rounds} interleaved calls) and D(P||P)",
        rows,
        "cov0 = AA'/d + I, cov1 = 3(BB'/d + I): det(cov1) ~ e^1700 overflows in the naive route; "
        "no mpmath reference at this size",
    )


def mvn_accuracy_section(d=16, cond=1e8, pairs=6):
    rng = np.random.default_rng(1)
    cases = []
    for _ in range(pairs):
        c0, c1 = random_spd(rng, d, cond), random_spd(rng, d, cond)
        m0 = rng.standard_normal(d)
        cases.append(("generic", m0, c0, m0 + 1e-3 * rng.standard_normal(d), c1))
        near = c0 * (1 + 1e-9 * rng.standard_normal((d, d)))
        near = (near + near.T) / 2
        if np.linalg.eigvalsh(near)[0] > 0:  # the entrywise noise may break positive definiteness
            cases.append(("near", m0, c0, m0, near))
    t0 = time.perf_counter()
    refs = [mp_kl_mvn(*case[1:]) for case in cases]
    t_ref = time.perf_counter() - t0
    for kind, label in (("generic", "two unrelated covariances"), ("near", "cov1 = cov0 (1 + 1e-9 noise)")):
        idx = [i for i, case in enumerate(cases) if case[0] == kind]
        rows = []
        for name, fn in MVN_METHODS.items():
            with np.errstate(all="ignore"):
                values = np.array([fn(*cases[i][1:]) for i in idx])
            rows.append(accuracy_row(name, values, np.array([refs[i] for i in idx]), None))
        print_table(
            f"Multivariate normals, d = {d}, condition number {cond:.0e}: {label} ({len(idx)} pairs)",
            rows,
            f"reference: mpmath {DPS} digits, inverse and determinants ({t_ref:.1f} s for both tables)"
            if kind == "generic"
            else "",
        )


# ----------------------------------------------------------------------------- discrete
def discrete_section():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from benchmarks import discrete  # written separately; exposes run() -> list[dict]
    except ImportError as exc:
        print(f"\nDiscrete distributions: benchmarks/discrete.py not available ({exc})")
        return
    print_table(
        f"Discrete distributions, {discrete.N_OUTCOMES} outcomes (rows from benchmarks/discrete.py)",
        discrete.run(),
        "stress set q = p(1 + delta z), delta 1e-1..1e-15 and 0; times on 1e7 elements",
        extra=[("worst_rel_err_delta_ge_1e-9", "err, delta>=1e-9", "err"), ("seconds_near", "time, q~p", "time")],
    )


def main():
    start = time.perf_counter()
    np.set_printoptions(precision=3)
    params, ref_mp = univariate_section()
    diag_section(params, ref_mp)
    vae_section()
    mvn_speed_section()
    mvn_accuracy_section()
    discrete_section()
    print(f"\ntotal run time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
