"""KL divergences between Gaussians (chapter 3)."""


def kl_normal(mu0, sigma0, mu1, sigma1):
    raise NotImplementedError


def kl_diag_normal(mu0, sigma0, mu1, sigma1, *, axis=-1):
    raise NotImplementedError


def kl_mvn(mu0, cov0, mu1, cov1):
    raise NotImplementedError
