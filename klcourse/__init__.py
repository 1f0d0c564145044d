"""klcourse — the reference library of the KL-divergence course.

Natural logs and nats throughout unless ``base`` is given (``base=2`` gives bits).
Gaussians are written N(mu, sigma^2) with sigma^2 the variance; functions take standard
deviations unless their name or docstring says otherwise.

The core needs NumPy, SciPy, Matplotlib and mpmath; the modules built on PyTorch (:mod:`klcourse.vae_model`)
need the ``torch`` extra, ``pip install "klcourse[torch]"``, and say so when it is missing.
``import klcourse`` never imports torch.

Where each chapter's code lives:

=====================  ===========================================================
chapter                module
=====================  ===========================================================
1-2 definitions, kin   :mod:`klcourse.divergences`
3 Gaussians            :mod:`klcourse.gaussians`
3 exponential families :mod:`klcourse.expfamily`
6 VAE                  :mod:`klcourse.vae`
7 EM                   :mod:`klcourse.em`
8 distillation         :mod:`klcourse.distillation`
9 estimation           :mod:`klcourse.estimators`
10 post-training       :mod:`klcourse.posttraining`
exercises              :mod:`klcourse.exercises` (``check``, ``hint``, ``progress``, ``list_exercises``)
figures                :mod:`klcourse.plotting`
=====================  ===========================================================
"""

from klcourse.distillation import distillation_loss
from klcourse.divergences import (
    cross_entropy,
    entropy,
    f_divergence,
    js_divergence,
    kl_divergence,
    mutual_information,
)
from klcourse.em import fit_gmm_em
from klcourse.estimators import mc_kl
from klcourse.exercises import check, hint, list_exercises
from klcourse.exercises.progress import progress
from klcourse.expfamily import kl_bernoulli, kl_exponential, kl_exponential_family, kl_gamma, kl_poisson
from klcourse.gaussians import kl_diag_normal, kl_mvn, kl_normal
from klcourse.vae import vae_kl

__version__ = "0.1.0"

__all__ = [
    "check",
    "cross_entropy",
    "distillation_loss",
    "entropy",
    "f_divergence",
    "fit_gmm_em",
    "hint",
    "js_divergence",
    "kl_bernoulli",
    "kl_diag_normal",
    "kl_divergence",
    "kl_exponential",
    "kl_exponential_family",
    "kl_gamma",
    "kl_mvn",
    "kl_normal",
    "kl_poisson",
    "list_exercises",
    "mc_kl",
    "mutual_information",
    "progress",
    "vae_kl",
]
