"""EM for Gaussian mixtures (chapter 7)."""


def fit_gmm_em(x, n_components, *, n_iter=100, tol=1e-8, init=None, seed=0):
    raise NotImplementedError
