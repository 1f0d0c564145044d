"""Optional dependencies: a clear install instruction instead of a bare ``No module named 'torch'``.

The core of ``klcourse`` needs only NumPy, SciPy, Matplotlib and mpmath. PyTorch comes with the ``torch`` extra,
``pip install "klcourse[torch]"``; scikit-learn (the bundled iris and digits data sets) with the ``datasets``
extra. A module that cannot work without PyTorch imports it through :func:`missing_torch` (module level) or
calls :func:`require_torch` (inside a function)::

    try:
        import torch
    except ModuleNotFoundError as exc:
        raise missing_torch("klcourse.vae_model") from exc
"""

from __future__ import annotations

import importlib

#: The install command each optional dependency's error message gives, by top-level module name.
EXTRAS = {
    "torch": ("PyTorch", 'pip install "klcourse[torch]"'),
    "sklearn": ("scikit-learn", 'pip install "klcourse[datasets]"'),
}


def missing(module: str, feature: str, cause: BaseException | None = None) -> ImportError:
    """The ImportError to raise when ``feature`` needs the optional ``module`` (``"torch"``, ``"sklearn"``).

    A module that is absent gives a :class:`ModuleNotFoundError` (a subclass of ImportError) naming the install
    command; a module that is present but fails to import (a broken install) keeps its own reason.
    """
    if module not in EXTRAS:
        raise ValueError(f"unknown optional dependency {module!r}; expected one of {sorted(EXTRAS)}")
    package, command = EXTRAS[module]
    absent = cause is None or (isinstance(cause, ModuleNotFoundError) and (cause.name or module).split(".")[0]
                               == module)
    if absent:
        return ModuleNotFoundError(f"{feature} needs {package}, which is not installed. Install it with: {command}",
                                   name=module)
    return ImportError(f"{feature} needs {package}, which is installed but failed to import ({cause}). "
                       f"Reinstalling may help: {command}", name=module)


def missing_torch(feature: str, cause: BaseException | None = None) -> ImportError:
    """:func:`missing` for PyTorch: the error says ``pip install "klcourse[torch]"``."""
    return missing("torch", feature, cause)


def require(module: str, feature: str):
    """Import and return the optional ``module``, or raise the ImportError of :func:`missing`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing(module.split(".")[0], feature, exc) from exc


def require_torch(feature: str = "This part of klcourse"):
    """Import and return :mod:`torch`, or raise an ImportError that says ``pip install "klcourse[torch]"``."""
    return require("torch", feature)


#: ``Feedback.misconception`` of a check that could not run because an optional package is absent.
MISSING_PACKAGE = "missing-package"


def missing_package_verdict(exc: BaseException, verdict):
    """For :func:`klcourse.exercises.evaluate`: a checker that failed because PyTorch or scikit-learn is not
    installed gets a sentence saying how to install it; any other failure keeps ``verdict``."""
    root = (getattr(exc, "name", None) or "").split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or root not in EXTRAS:
        return verdict
    from klcourse.exercises.core import INVALID, Verdict

    package, command = EXTRAS[root]
    return Verdict(False, f"This check needs {package}, which is not installed here. Install it with: {command} "
                          "(then restart the kernel).", INVALID, MISSING_PACKAGE)
