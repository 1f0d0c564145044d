"""Discrete information measures: entropy, cross-entropy, KL, JS, f-divergences, mutual information."""


def entropy(p, *, base=None, axis=-1):
    raise NotImplementedError


def cross_entropy(p, q, *, base=None, axis=-1):
    raise NotImplementedError


def kl_divergence(p, q, *, base=None, axis=-1, normalize=False):
    raise NotImplementedError


def js_divergence(p, q, *, base=None, axis=-1):
    raise NotImplementedError


def f_divergence(p, q, f, *, axis=-1):
    raise NotImplementedError


def mutual_information(joint, *, base=None):
    raise NotImplementedError
