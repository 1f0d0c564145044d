"""Staged hints: ``hint("chapter.short-name")`` shows the next hint for an exercise, ``hint(id, 2)`` a given one.

Every exercise has two or three hints, from a nudge towards the idea to the method (which functions, which
formula, in which order); no hint contains the expected value. The hints shown so far are counted per exercise
in this Python process (a restarted kernel starts again at the first hint).
"""

from __future__ import annotations

import html
import numbers
from dataclasses import dataclass, replace

from klcourse._optional import MISSING_PACKAGE
from klcourse.exercises.core import INVALID, WRONG, Feedback, _in_ipython, get_exercise

__all__ = ["HINTS", "Hint", "hint", "point_to_hint"]

#: exercise id -> its hints, first to last.
HINTS: dict[str, tuple[str, ...]] = {
    # ------------------------------------------------------------------ 1. definitions
    "definitions.kl-in-bits": (
        "D(P‖Q) is an expectation under P, the true climate: a sum over the three outcomes of p(x) times "
        "the log of p(x)/q(x), with Q the forecaster's model.",
        "Bits mean base-2 logarithms: use np.log2, or compute in nats with np.log and divide by ln 2.",
        "With arrays p and q in the same order (sun, cloud, rain): np.sum(p * np.log2(p / q)).",
    ),
    "definitions.implement-kl": (
        "Start from the definition: the sum over outcomes of p(x)·log(p(x)/q(x)), natural log. Convert both "
        "inputs with np.asarray(..., dtype=float) first.",
        "Apply the two conventions before taking logs: outcomes with p(x) = 0 are dropped (they contribute 0), "
        "and if q(x) = 0 at an outcome that P allows, the result is np.inf.",
        "A boolean mask does both: support = p > 0; return np.inf if np.any(q[support] == 0); otherwise return "
        "float(np.sum(p[support] * np.log(p[support] / q[support]))).",
    ),
    "definitions.predict-symmetry": (
        "Write both sums out term by term: D(P‖Q) has the terms p·log(p/q), D(Q‖P) the terms q·log(q/p).",
        "Q is P with its two outcomes swapped. What does relabelling the outcomes do to the set of terms in "
        "each sum?",
        "Verify by computing kl_divergence(P, Q) and kl_divergence(Q, P) and pick the string that describes "
        "how they compare.",
    ),
    "definitions.predict-zero": (
        "A term p(x)·log(p(x)/q(x)) with p(x) = 0 counts as 0; a term with p(x) > 0 and q(x) = 0 is infinite.",
        "The zero is P's third entry. In D(P‖Q) that outcome has weight p = 0; in D(Q‖P) the two vectors swap "
        "roles — what weight does the outcome get there, and what sits in the denominator of its log?",
        "Verify with kl_divergence(p, q) and kl_divergence(q, p): an infinite divergence prints as inf.",
    ),
    "definitions.triangle": (
        "Use the chapter's identity for the gap of the triangle inequality: "
        "D(P‖R) − D(P‖Q) − D(Q‖R) = Σ (p − q)·log(q/r). You need this sum to be positive.",
        "Make every term positive: in each coordinate p − q and log(q/r) should have the same sign. That "
        "happens when Q lies between P and R.",
        "Choose two quite different, strictly positive vectors P and R on three outcomes, take Q = (P + R)/2, "
        "and confirm the inequality with kl_divergence before answering (p, q, r).",
    ),
    "definitions.gibbs-figure": (
        "Expand the weighted sum with x_i = q_i/p_i: Σ p_i g_i = Σ p_i (x_i − 1) − Σ p_i ln x_i.",
        "The first part is Σ q_i − Σ p_i: what is it for two probability vectors? And which quantity is "
        "−Σ p_i ln(q_i/p_i)?",
        "Confirm numerically: compute np.sum(p * ((q / p - 1) - np.log(q / p))) and compare it with "
        "kl_divergence in both directions, with cross_entropy(p, q) and with entropy(p).",
    ),
    "definitions.excess-bits": (
        "A code with lengths ℓ(x) uses Σ p(x)·ℓ(x) bits per letter on average; the best code for a dyadic P "
        "uses ℓ(x) = −log₂ p(x).",
        "Read each letter's length off its codeword (count its characters), and compute the ideal lengths "
        "−log₂ p(x) for the same letters, in the same order.",
        "The excess per letter is Σ p(x)·(ℓ_used(x) − ℓ_best(x)) — the KL divergence in bits of Q(x) = "
        "2^(−ℓ_used(x)) from P. The question asks for the total: multiply by the number of letters encoded.",
    ),
    "definitions.mixture-hedge": (
        "The hedge is one model, M = ½Q1 + ½Q2: build its probability vector outcome by outcome first.",
        "Then take a single divergence of M from P, with the expectation under P, in nats.",
        "kl_divergence(p, 0.5 * q1 + 0.5 * q2). Compare it with the average of kl_divergence(p, q1) and "
        "kl_divergence(p, q2): convexity says which is larger.",
    ),
    "definitions.atom": (
        "Ask absolute continuity in each direction: is there an event that one distribution gives probability 0 "
        "and the other does not? Look at the single point 0.",
        "Where one distribution puts mass on an event the other gives probability 0, what does the definition "
        "make of the divergence with that one first? In the other direction, compare the two distributions "
        "away from 0: P spreads only half of its mass like N(0, 1).",
        "Write both densities off the point 0 (the point itself has Q-probability 0), take their ratio dQ/dP "
        "there and average its log under Q. Answer (D(P‖Q), D(Q‖P)), with np.inf where a divergence is "
        "infinite.",
    ),
    "definitions.stein-exponent": (
        "Stein's lemma: when the type-I error P(reject P) is held at a fixed level, the type-II error "
        "Q(accept P) of the best test decays like exp(−n·D), for one of the two divergences between P and Q.",
        "The expectation in the exponent is under the hypothesis whose error is held fixed, here P.",
        "Compute D(Bern(0.05)‖Bern(0.5)) in nats: both outcomes, the word used and not used, contribute a term.",
    ),
    "definitions.sanov-exponent": (
        "Sanov's theorem: P(empirical distribution in a set E) decays like exp(−n·D*), with D* the smallest "
        "D(T‖P) over the types T in E — the true distribution P is the second argument.",
        "The set {frequency of heads ≥ 1/2} is convex and does not contain p = 0.2, so the minimum sits on its "
        "edge, at T = Bern(1/2).",
        "Compute D(Bern(0.5)‖Bern(0.2)) in nats; compare it with the Gaussian approximation "
        "(t − p)²/(2p(1 − p)) to see how far apart they are this deep in the tail.",
    ),
    # ------------------------------------------------------------------ 2. relatives
    "relatives.nll-offset": (
        "The average NLL is a cross-entropy between the data's conditional distribution of Y given X and "
        "the model's, averaged over the observed x.",
        "Cross-entropy = entropy + KL divergence. Which of the two terms depends on the model's parameters θ, "
        "and which does not?",
        "Compute average_nll(theta) − kl_to_model(theta) at two different θ of your own: a constant gap rules "
        "out the options that depend on θ. Compare it with the remaining candidates, using entropy and "
        "H(Y | X) = H(X, Y) − H(X).",
    ),
    "relatives.mi-bits": (
        "Mutual information is a KL divergence: I(X; Y) = D(p(x, y) ‖ p(x)·p(y)). First build the joint table "
        "of species and petal-width bin.",
        "np.digitize(iris.data[:, 3], width_edges[1:-1]) gives each flower's bin; count the (species, bin) "
        "pairs into a table (np.add.at or np.histogram2d) and divide by the number of flowers.",
        "Pass the normalised table to mutual_information with base=2 (bits), or sum "
        "p(x, y)·log₂(p(x, y)/(p(x)p(y))) over the non-empty cells yourself.",
    ),
    "relatives.mi-from-joint": (
        "You need the two marginals: p(x) is the vector of row sums, p(y) the vector of column sums "
        "(joint.sum(axis=1) and joint.sum(axis=0)).",
        "The product of the marginals is np.outer(p_x, p_y); then I(X; Y) = Σ p(x, y)·log(p(x, y)/(p(x)p(y))).",
        "Skip the cells with p(x, y) = 0 with a boolean mask before taking logs (0·log 0 = 0) and return a "
        "float in nats (natural log).",
    ),
    "relatives.js-overlap": (
        "JS(P, Q) = ½·D(P‖M) + ½·D(Q‖M) with the mixture M = (P + Q)/2; the answer is in bits, so use "
        "base-2 logs.",
        "Sort the outcomes: where P and Q overlap, M equals both and the log-ratio is 0; where only one of them "
        "has mass, M is half of it. So only the outcomes outside the overlap contribute.",
        "Build both vectors on the common support {0, …, 13} (np.zeros, then fill each box) and call "
        "js_divergence(p, q, base=2); the box formula of the JS section should agree.",
    ),
    "relatives.chain-rule-term": (
        "The conditional term is a weighted average over the rows x: Σ_x P_X(x)·D(P_{Y|X=x} ‖ Q_{Y|X=x}).",
        "Each row's conditional distribution is the row divided by its own sum; the weights P_X(x) are the "
        "row sums of P (not of Q: the expectation is under P).",
        "kl_divergence of the two arrays of normalised rows gives one divergence per row; average them with "
        "the weights P_ex.sum(axis=1), then check against kl_divergence of the flattened tables minus "
        "kl_divergence of the row sums.",
    ),
    "relatives.dpi-predict": (
        "Recall the data-processing inequality: under which condition can processing not increase the "
        "divergence?",
        "Merging outcomes is a special channel (a 0/1 row-stochastic matrix) applied to both distributions. "
        "What changes when P and Q go through different channels?",
        "Try an extreme case with the pair P, Q: leave P as it is (K1 the identity) and send every outcome of "
        "Q to one outcome (K2 with a column of ones); compare kl_divergence before and after.",
    ),
    "relatives.reverse-pinsker": (
        "TV(P, Q) is half the sum of |p − q|. Where can the KL divergence become large while that sum stays "
        "small?",
        "The term p·log(p/q) grows like log(1/q) when Q gives a tiny probability to an outcome that P visits "
        "often — while |p − q| on that outcome stays about p.",
        "Use two outcomes: P puts a modest probability on the second one and Q almost none. Shrink Q's second "
        "entry until kl_divergence(p, q) is large enough, and check f_divergence(p, q, \"tv\") at the same time.",
    ),
    "relatives.tv-bound": (
        "Both inequalities bound TV(P, Q) by a function of D(P‖Q) alone: Pinsker by √(D/2), Bretagnolle–Huber by "
        "√(1 − e^(−D)). Compute the KL first, in nats.",
        "Evaluate both bounds at that KL; the better bound is the smaller number. Pinsker's grows without limit, "
        "Bretagnolle–Huber's never exceeds 1.",
        "kl = kl_divergence(P_tv, Q_tv); then min(pinsker_bound(kl), bretagnolle_huber_bound(kl)), or the two "
        "formulas with np.sqrt and np.exp.",
    ),
    "relatives.renyi-two": (
        "The Rényi divergence of order α is log(Σ p^α q^(1−α)) / (α − 1). Put α = 2.",
        "At α = 2 the sum is Σ p²/q = 1 + χ²(P‖Q), and the prefactor 1/(α − 1) is 1: the answer is a logarithm.",
        "np.log(np.sum(P_r**2 / Q_r)), and compare with renyi_divergence(P_r, Q_r, 2) and with np.log1p of "
        "f_divergence(P_r, Q_r, \"chi2\").",
    ),
    "relatives.dv-bound": (
        "The Donsker–Varadhan bound is E_P[T] − log E_Q[e^T]: the first expectation is under P, the second "
        "under Q — each is a sample mean over its own sample.",
        "t_p holds the critic at the samples from P, t_q at the samples from Q. Average t_p; for the second term "
        "take the mean of np.exp(t_q) and then its logarithm.",
        "np.mean(t_p) − np.log(np.mean(np.exp(t_q))), or dv_bound(t_p, t_q); scipy.special.logsumexp(t_q) − "
        "np.log(len(t_q)) is a stable log-mean-exp.",
    ),
    "relatives.cmi-xor": (
        "I(X; Y | Z) = H(Y | Z) − H(Y | X, Z): how much knowing X reduces the uncertainty about Y once Z is "
        "known. The answer is in bits.",
        "Given Z, Y is still a fair coin; given X and Z, the only uncertainty left is whether the flip N "
        "happened.",
        "Build the 2 × 2 × 2 table p(x, y, z) (each (x, y) has probability ¼, split between z = x xor y and its "
        "complement) and call conditional_mutual_information(joint, base=2); check it against the entropies.",
    ),
    # ------------------------------------------------------------------ 3. Gaussians
    "gaussians.kl-by-hand": (
        "Use the closed form D(N(μ₀, σ₀²) ‖ N(μ₁, σ₁²)) = log(σ₁/σ₀) + (σ₀² + (μ₀ − μ₁)²)/(2σ₁²) − ½, with "
        "subscript 0 the first argument, under which the expectation is taken.",
        "The first distribution gives μ₀ and σ₀, the second μ₁ and σ₁; the numbers in the statement are "
        "standard deviations. Square them in the fraction, not inside the log.",
        "Evaluate the expression with math.log (natural log, nats) and compare it with kl_normal, which also "
        "takes standard deviations, in the order (mu0, sigma0, mu1, sigma1).",
    ),
    "gaussians.kl-gauss": (
        "The closed form has three parts: the log of the ratio of the standard deviations, the variance plus "
        "the squared mean gap over 2·s1², and the constant −½.",
        "s0 and s1 are standard deviations: square them in the fraction, not in the log. Identical arguments "
        "must give exactly 0 — try kl_gauss(0, 1, 0, 1).",
        "Translate the formula term by term with math.log and ** 2, return the number, and assign the "
        "function itself: answer = kl_gauss (no parentheses).",
    ),
    "gaussians.vae-term": (
        "q(z | x) is a diagonal Gaussian and the prior N(0, I) factorises too, so the divergence is a sum of "
        "one-dimensional Gaussian divergences, one per latent dimension.",
        "Per dimension, D(N(μ, σ²) ‖ N(0, 1)) = ½(σ² + μ² − 1 − log σ²), and logvar already is log σ²: "
        "σ² = exp(logvar).",
        "Compute 0.5 * np.sum(np.exp(logvar) + mu**2 - 1 - logvar) over all dimensions (a sum, not a mean); "
        "vae_kl(mu, logvar) verifies it.",
    ),
    "gaussians.fisher-approx": (
        "In the coordinates (μ, σ) the Fisher information of N(μ, σ²) is diagonal: F = diag(1/σ², 2/σ²), "
        "evaluated at the starting point.",
        "With a diagonal F, ½·δᵀFδ = ½·(F_μμ·δ_μ² + F_σσ·δ_σ²); δ_μ is the change of the mean, δ_σ the change "
        "of the standard deviation.",
        "Evaluate it with the numbers of the statement, then compare with kl_normal on the same pair and "
        "compute the relative difference |approximation − exact| / exact.",
    ),
    "gaussians.mvn-by-hand": (
        "D = ½·[tr(Σ₁⁻¹Σ₀) + (μ₁ − μ₀)ᵀΣ₁⁻¹(μ₁ − μ₀) − k + log det Σ₁ − log det Σ₀], with k the dimension.",
        "Avoid explicit inverses: np.trace(np.linalg.solve(cov1, cov0)) is the trace term, "
        "gap @ np.linalg.solve(cov1, gap) the Mahalanobis term, and np.linalg.slogdet gives log-determinants.",
        "Add the trace, Mahalanobis and log-determinant terms, subtract the dimension, halve, and compare with "
        "kl_mvn(mvn_mu0, mvn_cov0, mvn_mu1, mvn_cov1).",
    ),
    "gaussians.equal-mse": (
        "With equal means in each pair the MSE is ½(σ₀ − σ₁)²: the same widening σ₁ − σ₀ in both pairs gives "
        "the same MSE.",
        "The KL divergence depends on the ratio σ₁/σ₀, not on the difference: for equal means it is "
        "log(σ₁/σ₀) + σ₀²/(2σ₁²) − ½.",
        "Apply the same widening once from a very small σ₀ and once from a σ₀ much larger than the widening; "
        "compare kl_normal for the two pairs until their ratio is large enough.",
    ),
    "gaussians.halve-or-double": (
        "With equal means, D(N(0, σ²) ‖ N(0, 1)) = ½(σ² − 1) − log σ. Which term dominates for large σ, and "
        "which for small σ?",
        "Halving and doubling are the same distance in log σ, but the curve in the figure is not symmetric in "
        "log σ: read its height at both points.",
        "Verify with kl_normal(0, 0.5, 0, 1) and kl_normal(0, 2, 0, 1) (standard deviations) and choose the "
        "string that names the larger one.",
    ),
    # ------------------------------------------------------------------ 4. asymmetry
    "asymmetry.both-directions": (
        "Forward D(P‖Q) is an expectation under P: Σ p·log(p/q). Reverse D(Q‖P) swaps the roles: "
        "Σ q·log(q/p).",
        "Both are in nats (natural log); the answer is an array of two numbers, forward first.",
        "np.array([kl_divergence(P, Q), kl_divergence(Q, P)]) with the P and Q of the statement.",
    ),
    "asymmetry.gaussian-reverse": (
        "The reverse divergence D(Q‖P) is an expectation under Q, the approximation: Q is the first argument.",
        "N(0, 4) and N(1, 1) are written with variances, while kl_normal takes standard deviations: take "
        "square roots first.",
        "Call kl_normal(mean of Q, sd of Q, mean of P, sd of P); the quadrature helper kl_on_grid on the "
        "log-densities gives an independent check.",
    ),
    "asymmetry.fit-forward": (
        "Minimising D(P ‖ N(μ, σ²)) over Gaussians matches moments: the best μ and σ² are the mean and the "
        "variance of P.",
        "The mixture's mean is Σ w_k·m_k. Its variance has two parts: the average variance within the "
        "components, Σ w_k·s_k², and the spread of the component means around the mixture's mean.",
        "variance = Σ w_k·s_k² + Σ w_k·(m_k − mean)²; return (mean, np.sqrt(variance)) — a standard deviation — "
        "computed from np.asarray(..., dtype=float) copies of the inputs.",
    ),
    "asymmetry.wide-or-narrow": (
        "Forward D(P‖Q) punishes Q for missing mass where P has it; reverse D(Q‖P) punishes Q for putting mass "
        "where P has almost none.",
        "With two well-separated modes, which direction accepts covering both modes and the gap between them, "
        "and which prefers to sit on one mode?",
        "Verify: fit_forward_gaussian(**target) gives the forward σ; run fit_reverse_gaussian from several "
        "starts, keep the fit with the lowest .kl, and compare the two σ.",
    ),
    "asymmetry.which-basin": (
        "Locate the start μ₀ = −1, σ₀ = 3 on the bottom panel. Gradient descent moves downhill, across the "
        "contour lines.",
        "Basins are separated by ridges, and the descent does not cross a ridge: which minimum's basin "
        "contains the start?",
        "Run fit_reverse_gaussian(**EXAMPLE_MIXTURE, starts=[(-1.0, 3.0)]) and compare the fit's (mu, sigma) "
        "with the three entries of optima: the nearest one names the answer.",
    ),
    "asymmetry.infinite-one-way": (
        "D(Q‖P) is infinite exactly when Q puts mass on an outcome where P has probability 0.",
        "D(P‖Q) stays finite when Q is positive wherever P is. So give P a zero that Q does not have.",
        "Take a few outcomes, P zero on one of them, Q strictly positive everywhere, and check "
        "kl_divergence(p, q) and kl_divergence(q, p).",
    ),
    "asymmetry.mean-field-variance": (
        "The reverse-KL factor q₁ is the Gaussian whose log-density is E_q₂[log p(z)] up to a constant: its "
        "precision is the (1,1) entry Λ₁₁ of the target's precision matrix Λ = Σ⁻¹.",
        "1/Λ₁₁ is the variance of z₁ given z₂ (the conditional variance), not the marginal variance σ₁². In two "
        "dimensions it is σ₁² times a factor that depends only on ρ.",
        "Build Σ = [[σ₁², ρσ₁σ₂], [ρσ₁σ₂, σ₂²]], invert it with np.linalg.inv and take 1 / its (0, 0) "
        "entry.",
    ),
    # ------------------------------------------------------------------ 5. numerics
    "numerics.kl-bernoulli": (
        "Two outcomes with probabilities (a, 1 − a) and (b, 1 − b): apply the chapter's stable form of the "
        "discrete KL divergence term by term.",
        "Write each term as weight·ψ(gap/weight) with ψ(r) = r − log(1 + r), which nm.r_minus_log1p evaluates "
        "without cancellation; the leftover linear parts −(b − a) and −(a − b) cancel exactly, so drop them.",
        "Treat a weight of 0 separately: weight·ψ(gap/weight) tends to the gap itself. A ratio gap/weight of −1 "
        "(Q rules the outcome out) must give inf, which nm.r_minus_log1p returns. Return a float.",
    ),
    "numerics.kl-div-batch": (
        "F.kl_div(input, target) expects input = log Q (the model's log-probabilities) and target = P "
        "(probabilities): the opposite order to D(P‖Q).",
        "Get both from the logits along the class axis: torch.log_softmax(model_logits_ex, -1) and "
        "torch.softmax(target_logits_ex, -1).",
        "reduction=\"batchmean\" divides the summed divergence by the batch size, the average you want "
        "(\"mean\" divides by the number of entries instead); .item() gives a float. Check with kl_divergence "
        "on the softmaxes.",
    ),
    "numerics.clip-predict": (
        "Q has a zero where P has mass (the last outcome), so the true D(P‖Q) is infinite; clipping replaces "
        "that zero by eps.",
        "Only that term depends on eps: p·log(p/eps). What happens to it when eps gets smaller?",
        "Verify with both values of eps and compare; the difference should be the last entry of P times the "
        "log of the ratio of the two eps.",
    ),
    "numerics.logsumexp": (
        "np.exp of a logit in the thousands overflows to inf in float64: shift the logits before "
        "exponentiating.",
        "log Σ exp(z_i) = m + log Σ exp(z_i − m) for any m; with m = max z every exp(z_i − m) lies in (0, 1].",
        "m = z.max(), then m + np.log(np.sum(np.exp(z - m))); compare with scipy.special.logsumexp(z).",
    ),
    "numerics.negative-textbook": (
        "The textbook formula adds terms of order 1 that almost cancel when the two Gaussians are nearly equal; "
        "their rounding errors, about 1e-16, remain.",
        "Make the true divergence smaller than that rounding error: equal means and standard deviations that "
        "differ only in the ninth or tenth significant digit.",
        "Loop over candidates (0, s, 0, s·(1 + k·1e-9)) for a range of integers k and keep the first for which "
        "nm.naive_kl_normal is negative; kl_normal on the same input stays non-negative.",
    ),
    "numerics.digits-lost": (
        "k correct significant digits means a relative error of about 10^(−k): read the textbook curve's "
        "relative error at δ = 1e-6 on the top panel's logarithmic axis.",
        "Cross-check with the error model: the formula's absolute error is about ε (float64's machine epsilon) "
        "while the divergence is of order δ², so the relative error is about ε/δ².",
        "Read the relative error off the figure at that δ (the textbook curve, not the ε/δ² guide line); "
        "the digits left are about −log10 of that relative error. Pick the option nearest to your reading.",
    ),
    "numerics.bf16-roundoff": (
        "With t significant bits, the numbers between 1 and 2 are spaced 2^(1 − t) apart: that spacing is "
        "machine epsilon.",
        "Rounding to the nearest representable number errs by at most half a spacing, relative to the number: "
        "u = eps / 2.",
        "bfloat16 has t = 8 significant bits; torch.finfo(torch.bfloat16).eps gives eps to check your u.",
    ),
    "numerics.condition-number": (
        "The relative condition number of a function f of inputs x_1, ..., x_m under componentwise relative "
        "perturbations is Σ_j |x_j ∂f/∂x_j| divided by |f|.",
        "Here f = F(p, q) = Σ_i p_i log(p_i/q_i) with all six entries free: differentiate one term with respect to "
        "its p_i and with respect to its q_i, then multiply each derivative by that entry.",
        "Sum the absolute values of those six products and divide by |F(p, q)|: this is the κ_F line of "
        "eq-num-kappa-discrete in the proposition 'Two condition numbers of the discrete KL', evaluated with "
        "NumPy.",
    ),
    # ------------------------------------------------------------------ 6. VAE
    "vae.kl-batch": (
        "For one image the KL term is a sum over the latent dimensions of ½(σ² + μ² − 1 − log σ²), with "
        "σ² = exp(logvar).",
        "Turn BATCH_MU and BATCH_LOGVAR into arrays with one row per image and one column per latent dimension, "
        "and sum over the columns (axis=1) first.",
        "Then average the per-image values over the batch with np.mean — not a sum over the batch, and not a "
        "mean over the dimensions.",
    ),
    "vae.kl-torch": (
        "The same formula as in NumPy, ½(exp(logvar) + μ² − 1 − logvar) per dimension, written with torch "
        "operations so that autograd can follow it.",
        "Sum over the last axis only: torch.sum(..., dim=-1) gives one value per row for shape (n, d) and a "
        "0-d tensor for shape (d,).",
        "Stay in torch: no .numpy(), float() or .item() inside (they cut the gradient) and no change of dtype; "
        "torch.exp, ** 2 and torch.sum are enough. Assign the function itself.",
    ),
    "vae.beta-units": (
        "β multiplies the KL term in the loss: the larger β, the more each nat of KL costs.",
        "A unit is active when its KL is above the threshold, and staying active costs KL. What does the "
        "optimiser do with units whose contribution to the reconstruction is worth less than that cost?",
        "Look at the chapter's β sweep and count the units above the threshold at each β.",
    ),
    "vae.rate-from-kl": (
        "The rate is the KL term of the whole latent vector: the sum of the per-dimension divergences.",
        "The values are in bits; one bit is ln 2 nats.",
        "Sum KL_PER_DIM_BITS over all dimensions and multiply by np.log(2).",
    ),
    "vae.elbo-gap": (
        "The evidence decomposition: log p(x) = ELBO + D(q(z | x) ‖ p(z | x)).",
        "The ELBO is the expected log-likelihood minus the KL term to the prior: "
        "E_q[log p(x | z)] − D(q(z | x) ‖ p(z)).",
        "Compute LOG_EVIDENCE − (EXPECTED_LOG_LIKELIHOOD − KL_TERM); the result cannot be negative.",
    ),
    "vae.mse-sigma": (
        "The MSE penalty pulls (μ, σ) towards (0, 1) with a squared error; the KL term penalises σ through "
        "σ² − 1 − log σ².",
        "Compare how the two penalties behave as σ → 0: −log σ² grows without bound, while (σ − 1)² stays "
        "bounded.",
        "A unit that wants precise codes pays little for a tiny σ under one of the penalties: compare the σ_j "
        "of the two trained encoders in the chapter's experiment.",
    ),
    "vae.iwae-direction": (
        "The average of K importance weights p(x, z_k) / q(z_k | x) is an unbiased estimate of p(x) for every K.",
        "The log is concave, so by Jensen the expected log of an estimate is at most the log of its expectation; "
        "the inequality is tighter when the estimate is less noisy.",
        "Look at the chapter's measurement: the shortfall of L_K below the grid's log p(x) for K = 1, 10, 100, "
        "1000, averaged over the seeds.",
    ),
    "vae.implicit-beta": (
        "Write out −log N(x; f(z), s² I) for an m-pixel image: a squared-error term plus a constant that does "
        "not depend on the networks.",
        "The squared error is divided by 2s², where s² is the variance. Multiplying a loss by a positive "
        "constant does not change its minimiser.",
        "Multiply −ELBO by 2s² so that the squared error has weight 1 and read off the factor in front of the "
        "KL term; DECODER_SD is s, a standard deviation.",
    ),
    # ------------------------------------------------------------------ 7. EM
    "em.kl-gap": (
        "The gap log p(x | θ) − L(q, θ) is D(q ‖ p(z | x, θ)): an expectation under q, your guess.",
        "The joint values p(x, z = k | θ) are not yet a posterior: divide them by their sum, which is "
        "p(x | θ).",
        "With post = joint / joint.sum(), compute np.sum(q * np.log(q / post)) in nats.",
    ),
    "em.e-step": (
        "The responsibility r_nk is the posterior probability of component k for point n: "
        "π_k·N(x_n; μ_k, Σ_k) divided by its sum over k.",
        "Work with logs: log π_k + multivariate_normal(means[k], covs[k]).logpdf(x) for each k, stacked as the "
        "columns of an (n, K) array.",
        "Normalise each row by subtracting scipy.special.logsumexp(..., axis=1, keepdims=True) and "
        "exponentiate; np.atleast_1d keeps the shape right when x holds a single point.",
    ),
    "em.m-step-mean": (
        "Each new mean is a weighted average of all data points, with the weights r_nk of component k.",
        "N_k = Σ_n r_nk is the column sum of resp, shape (K,); the weighted sums Σ_n r_nk·x_n form a (K, d) "
        "array.",
        "resp.T @ x gives the weighted sums; divide row k by N_k (broadcast with n_k[:, None]).",
    ),
    "em.can-decrease": (
        "The E-step sets q to the posterior, so that the gap is zero and L = log p(x | θ); the M-step "
        "maximises L over θ with q fixed.",
        "Chain the inequalities log p(x | θ_new) ≥ L(q, θ_new) ≥ L(q, θ_old) = log p(x | θ_old). Can each of "
        "them hold with equality?",
        "In the cell after the check, look at the differences between consecutive log-likelihoods of the run "
        "(np.diff): their smallest value, and what happens near convergence.",
    ),
    "em.elbo-from-numbers": (
        "The decomposition log p(x | θ) = L(q, θ) + D(q ‖ p(z | x, θ)) holds for every q.",
        "The KL gap is never negative, so L can never be above the log-likelihood.",
        "Rearrange the decomposition for L and mind the signs: the log-likelihood of continuous data can be "
        "negative.",
    ),
    "em.better-optimum": (
        "A higher log-likelihood is better only if the solution is a genuine fit: look at the smallest "
        "component variances as well.",
        "Compare each run's smallest variance with the ridge reg_covar: a variance at the ridge means a "
        "component has collapsed onto a few points.",
        "Set the collapsed runs aside, then take the highest log-likelihood among the others.",
    ),
    "em.proximal-gap": (
        "Q(θ | θ_old) = Σ_k p_old(k) log p(x, z = k | θ) with p_old the posterior under θ_old; and "
        "log p(x, z | θ) = log p(x | θ) + log p(z | x, θ).",
        "So Q(θ | θ_old) − log p(x | θ) is an average of log p(z = k | x, θ) under p_old: two posteriors, "
        "each the joint values divided by their sum.",
        "Equation em-proximal for one point gives the identity Q − log p = −H(p_old) − D(p_old ‖ p_new): "
        "compute the entropy of the old posterior and the KL divergence of the new one from it, and check "
        "that the result is negative.",
    ),
    # ------------------------------------------------------------------ 8. distillation
    "distillation.loss-by-hand": (
        "Soften both sets of logits with the temperature: p^T = softmax(z/T), row by row.",
        "The divergence is D(teacher ‖ student): the expectation is under the teacher's softened "
        "probabilities, Σ p_t·log(p_t/p_s).",
        "Compute it for each row, average over the batch (the 1/B) and multiply by T²; in the softmax, "
        "subtract each row's maximum before exponentiating.",
    ),
    "distillation.soft-targets": (
        "softmax(z/T): divide the logits by T, exponentiate and normalise along the last axis.",
        "exp of logits in the thousands overflows; subtracting the maximum along the last axis first leaves the "
        "softmax unchanged.",
        "Use keepdims=True in both reductions (max and sum over axis=-1) so that the same code broadcasts for "
        "1-D and 2-D input; convert with np.asarray(logits, dtype=float) first.",
    ),
    "distillation.kl-div-loss": (
        "The traps: F.kl_div wants log-probabilities as input and probabilities as target; the student is "
        "the input and the teacher the target; both are softened by T; and the reduction and the T² factor "
        "must be right.",
        "input = F.log_softmax(student_logits / T, dim=-1), target = F.softmax(teacher_logits / T, dim=-1).",
        "reduction=\"batchmean\" averages over the batch (\"mean\" would also divide by the number of "
        "classes); multiply the result by T**2 and return the tensor.",
    ),
    "distillation.entropy-limit": (
        "As T grows, z/T shrinks towards the zero vector, whatever the fixed logits are.",
        "What is the softmax of a vector whose entries are all equal, and what is the entropy of that "
        "distribution?",
        "Verify: compute entropy(softmax_with_temperature(z, T)) for growing T (10, 1e3, 1e6) and compare "
        "with the options.",
    ),
    "distillation.ece-table": (
        "ECE = Σ_m (|B_m|/n)·|accuracy(B_m) − confidence(B_m)|: for each bin, its share of the predictions "
        "times the gap between its accuracy and its mean confidence.",
        "Assign each prediction to its bin: np.ceil(confidence·M) numbers the bins from 1 to M when no "
        "confidence sits on an edge. Empty bins contribute nothing.",
        "Loop over the non-empty bins: the mean of ECE_CORRECT and the mean of ECE_CONFIDENCE in the bin, "
        "their absolute difference, weighted by the bin's share of all predictions; add up.",
    ),
    "distillation.high-t-limit": (
        "The chapter's theorem on the high-temperature limit: T²·D(p^T_t‖p^T_s) tends to a multiple of the "
        "squared length of the centred difference of the logit vectors.",
        "Centre the difference: g = (z_s − z_t) − mean(z_s − z_t). Softmax ignores a constant shift, so only "
        "the centred part matters.",
        "The limit is Σ g²/(2K) with K the number of classes; compare with distillation_loss at a large T on "
        "float64 tensors.",
    ),
    "distillation.label-smoothing": (
        "Build the target vector first: the one-hot vector of the label, mixed with the uniform distribution "
        "over the K classes with weights 1 − ε and ε. It must sum to 1.",
        "The loss is the cross-entropy −Σ_k q_k log p_k with p = softmax(SMOOTH_LOGITS) at T = 1; compute "
        "log p with the maximum subtracted (a log-sum-exp).",
        "Check the target against klcourse.distillation.smoothed_targets, or the loss against "
        "F.cross_entropy(..., label_smoothing=SMOOTH_EPS) on a float64 tensor.",
    ),
    # ------------------------------------------------------------------ 9. estimation
    "estimation.small-sample": (
        "With r = p(x)/q(x) at each draw, the estimators of D(Q‖P) are k1 = −log r, k2 = ½(log r)² and "
        "k3 = (r − 1) − log r, each averaged over the draws.",
        "log r = log p(x) − log q(x), with P = N(μ, 1) and Q = N(0, 1); scipy.stats.norm.logpdf(x, mean, sd) "
        "evaluates both.",
        "Average each estimator over the draws in est_data.SMALL_X, using np.expm1(log_r) for r − 1, and "
        "answer [k1, k2, k3] in that order.",
    ),
    "estimation.k3-function": (
        "k3 = (r − 1) − log r with log r = log p − log q, averaged over all entries.",
        "Compute log r in float64 (convert the inputs first) and use np.expm1(log_r) for r − 1: it keeps its "
        "precision when r is close to 1.",
        "Return float(np.mean(np.expm1(log_r) - log_r)). Where log p = −inf, log r = −inf and the formula gives "
        "inf, the right answer there.",
    ),
    "estimation.which-negative": (
        "Write each per-sample value as a function of log r: k1 = −log r, k2 = ½(log r)², "
        "k3 = (r − 1) − log r.",
        "A square is never negative, and log r ≤ r − 1 for every r > 0. Which estimator is left?",
        "Verify in the cell after the check: the smallest value of each estimator over all the draws.",
    ),
    "estimation.negative-average": (
        "For Q = N(0, 1) and P = N(δ, 1), k1 = −log r is a linear function of x, so it is Gaussian itself; the "
        "chapter's equation gives its mean and variance.",
        "An average of n independent copies of a Gaussian keeps the mean and divides the variance by n.",
        "P(average < 0) = Φ(−mean/sd) with sd the square root of the average's variance; "
        "scipy.stats.norm.cdf evaluates Φ.",
    ),
    "estimation.policy-kl": (
        "D(π‖π_ref) is an expectation under the policy π: Σ_a π(a)·log(π(a)/π_ref(a)).",
        "Turn the logits into probabilities with a softmax (scipy.special.softmax); est_data.reference_policy() "
        "already is a probability vector.",
        "kl_divergence(pi, reference) with the policy first.",
    ),
    "estimation.optimal-policy": (
        "The maximiser of E_π[R] − β·D(π‖π_ref) reweights the reference: π*(a) ∝ π_ref(a)·exp(R(a)/β).",
        "Use this exercise's β (est_data.EX_BETA), not the one of the chapter's example, and normalise so that "
        "the probabilities sum to one.",
        "weights = reference · np.exp(np.array(est_data.REWARDS) / est_data.EX_BETA), divided by their sum; "
        "with large rewards, subtract the maximum of R/β before exponentiating.",
    ),
    "estimation.lambda-star": (
        "The variance of k_λ = −log r + λ(r − 1) is a parabola in λ: Var log r − 2λ·Cov(log r, r) + λ²·Var r. "
        "Where is its minimum?",
        "Setting the derivative to zero gives λ* = Cov(log r, r) / Var(r). For this pair both are functions of "
        "δ² only.",
        "With d2 = δ²: λ* = d2 / (e^d2 − 1); np.expm1(d2) computes the denominator.",
    ),
}

#: How many hints of each exercise were shown in this process.
_SHOWN: dict[str, int] = {}


@dataclass(frozen=True)
class Hint:
    """One hint: ``number`` of ``total`` for ``exercise_id`` (``number`` 0: the exercise has no hints)."""

    exercise_id: str
    number: int
    total: int
    text: str

    def _footer(self) -> str:
        if self.number == 0:
            return ""
        if self.number < self.total:
            return f' (hint("{self.exercise_id}") again for hint {self.number + 1})'
        return " (the last hint)"

    def __str__(self) -> str:
        if self.number == 0:
            return f"💡 [{self.exercise_id}] {self.text}"
        return f"💡 Hint {self.number}/{self.total} [{self.exercise_id}] {self.text}{self._footer()}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        head = f"Hint {self.number}/{self.total}" if self.number else "Hint"
        body = (f'<div class="klcourse-hint" style="border-left:3px solid #9a6700;padding-left:0.6em">💡 '
                f"<b>{head}</b> [{html.escape(self.exercise_id)}] {html.escape(self.text)}"
                f"<small>{html.escape(self._footer())}</small></div>")
        return {"text/plain": str(self), "text/html": body}


def _hints_of(exercise_id: str) -> tuple[str, ...]:
    get_exercise(exercise_id)  # an unknown id: KeyError listing the chapter's exercises
    return HINTS.get(exercise_id, ())


def hint(exercise_id: str, n: int | None = None) -> Hint:
    """Show the next hint for an exercise, or hint number ``n`` (1, 2, …).

    Each call without ``n`` moves on to the next hint; after the last one the last is shown again. ``n`` shows a
    given hint and continues from there. The hints point towards the method; none gives the answer.

    Examples
    --------
    >>> hint("gaussians.kl-by-hand")  # doctest: +SKIP
    >>> hint("gaussians.kl-by-hand", 2)  # doctest: +SKIP
    """
    if not isinstance(exercise_id, str):
        raise ValueError(f"exercise_id must be a string such as 'gaussians.kl-by-hand', got {exercise_id!r}")
    exercise_id = exercise_id.strip().lower()  # as registered: case and surrounding spaces do not matter
    hints = _hints_of(exercise_id)
    if not hints:
        result = Hint(exercise_id, 0, 0, "This exercise has no hints; reread the section it refers to.")
    else:
        if n is None:
            number = min(_SHOWN.get(exercise_id, 0) + 1, len(hints))
        elif isinstance(n, numbers.Integral) and not isinstance(n, bool) and 1 <= n <= len(hints):
            number = int(n)
        else:
            raise ValueError(f"n must be a whole number from 1 to {len(hints)} for {exercise_id!r}, got {n!r}")
        _SHOWN[exercise_id] = number
        result = Hint(exercise_id, number, len(hints), hints[number - 1])
    if not _in_ipython():
        print(result)  # in Jupyter the returned Hint displays itself
    return result


def point_to_hint(feedback: Feedback) -> Feedback:
    """The feedback with a pointer to :func:`hint` appended when the answer was wrong or invalid."""
    if feedback.status not in (WRONG, INVALID) or not HINTS.get(feedback.exercise_id):
        return feedback
    if feedback.misconception == MISSING_PACKAGE:  # not the learner's answer: a package to install
        return feedback
    return replace(feedback, message=f'{feedback.message} Stuck? hint("{feedback.exercise_id}") gives a hint.')
