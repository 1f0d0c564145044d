"""Monte Carlo estimators of KL from samples (chapter 9)."""


def mc_kl(log_q, log_p, *, estimator="k3"):
    raise NotImplementedError
