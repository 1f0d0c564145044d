"""The package on its own: build the wheel, install it into a fresh venv without torch, and use it as a learner.

The venv lives in the system's temporary folder, keyed by the Python version and the wheel's declared core
dependencies: the first run creates it from those dependencies alone (about a minute: NumPy, SciPy, Matplotlib
and mpmath from the pip cache or index); later runs with the same dependency list reinstall only the freshly built
klcourse wheel (a few seconds). A lock keeps parallel test processes from installing into it at the same time.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from klcourse.exercises import list_exercises

#: every exercise of the repository must be in the wheel too
N_EXERCISES = len(list_exercises())

ROOT = Path(__file__).resolve().parents[1]
CORE = {"numpy", "scipy", "matplotlib", "mpmath"}
TORCH_HINT = 'pip install "klcourse[torch]"'


def _copy_source(dest: Path) -> Path:
    """pyproject.toml, README and the package, without caches: building from a copy writes nothing here."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "klcourse", dest / "klcourse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = _copy_source(tmp / "src")
    out = tmp / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(out), "-q"],
                            capture_output=True, text=True, timeout=300, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("klcourse-*.whl")
    return built


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode()), z.namelist()


def _requirement_name(spec: str) -> str:
    for sep in ("<", ">", "=", "!", "~", ";", "[", " "):
        spec = spec.split(sep)[0]
    return spec.strip().lower()


def test_wheel_declares_a_small_core_and_carries_no_notebook(wheel):
    meta, names = _metadata(wheel)
    requires = meta.get_all("Requires-Dist")
    core = {_requirement_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE, requires
    torch_extra = [r for r in requires if 'extra == "torch"' in r]
    assert [_requirement_name(r) for r in torch_extra] == ["torch"] and ">=2.1" in torch_extra[0]
    assert {"torch", "datasets"} <= set(meta.get_all("Provides-Extra"))
    # exercises, checkers and the learner tools are inside; no notebook (the instructor edition holds solutions)
    for module in ("core", "checkers", "hints", "progress", "gaussians", "definitions", "estimation"):
        assert f"klcourse/exercises/{module}.py" in names
    assert "klcourse/_optional.py" in names and "klcourse/vae_model.py" in names
    assert not [n for n in names if n.endswith(".ipynb") or n.startswith(("book/", "tests/"))]
    assert all(n.startswith(("klcourse/", "klcourse-")) for n in names), names
    assert wheel.stat().st_size < 1_000_000


def _venv(wheel: Path) -> Path:
    """The venv for this dependency list (created once), with this session's wheel installed in it."""
    meta, _ = _metadata(wheel)
    deps = sorted(r for r in meta.get_all("Requires-Dist") if "extra ==" not in r)
    key = hashlib.sha256(json.dumps([sys.version, deps]).encode()).hexdigest()[:16]
    venv = Path(tempfile.gettempdir()) / f"klcourse-pkgtest-{key}"
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check"]
    if not (venv / ".ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        # a plain venv: no system site-packages (so no torch), no pip of its own (this process's pip installs)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        result = subprocess.run([*pip, str(wheel)], capture_output=True, text=True, timeout=600, cwd=venv)
        assert result.returncode == 0, result.stderr[-3000:]
        (venv / ".ready").write_text("\n".join(deps) + "\n")
    else:  # same dependencies: only the new wheel
        result = subprocess.run([*pip, "--no-deps", "--force-reinstall", str(wheel)], capture_output=True,
                                text=True, timeout=300, cwd=venv)
        assert result.returncode == 0, result.stderr[-3000:]
    return venv


LEARNER_SCRIPT = r'''
import json, os, sys
out = {"sys_path": sys.path}
import klcourse
out["file"] = klcourse.__file__
out["torch_imported"] = "torch" in sys.modules
try:
    import torch  # noqa: F401
    out["torch"] = "importable"
except ModuleNotFoundError:
    out["torch"] = "absent"
from klcourse import check, hint, progress
from klcourse.exercises import hint as hint_again
out["same_hint"] = hint is hint_again

def kl_gauss(mu0, s0, mu1, s1):
    import math
    return math.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5

right = check("definitions.predict-symmetry", "equal")
right_function = check("gaussians.kl-gauss", kl_gauss)
wrong = check("gaussians.kl-by-hand", 123.0)
out["checks"] = [[f.passed, f.message] for f in (right, right_function, wrong)]
# checkers that need an optional package say which extra installs it
out["optional"] = [check("relatives.mi-bits", 0.5).message, check("vae.kl-torch", lambda mu, logvar: mu).message]
first, second = hint("gaussians.kl-by-hand"), hint("gaussians.kl-by-hand")
out["hints"] = [[h.number, h.total, h.text] for h in (first, second, hint("gaussians.kl-by-hand", 1))]
report = progress()
out["passed"] = report.passed
out["total"] = report.total
with open(os.environ["KLCOURSE_PROGRESS"], encoding="utf-8") as handle:
    out["record"] = json.load(handle)
try:
    import klcourse.vae_model  # noqa: F401
    out["vae_model"] = "imported"
except ImportError as exc:
    out["vae_model"] = [type(exc).__name__, str(exc)]
print("RESULT " + json.dumps(out))
'''


def test_installed_wheel_works_without_torch(wheel, tmp_path):
    lock_path = Path(tempfile.gettempdir()) / "klcourse-pkgtest.lock"
    with open(lock_path, "w") as lock_handle:
        fcntl.flock(lock_handle, fcntl.LOCK_EX)  # one installer/user of the shared venv at a time
        venv = _venv(wheel)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "KLCOURSE"))}
        env.update(HOME=str(tmp_path), KLCOURSE_PROGRESS=str(tmp_path / "record" / "progress.json"),
                   MPLBACKEND="Agg", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
        run = dict(capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        script = subprocess.run([str(venv / "bin" / "python"), "-c", LEARNER_SCRIPT], **run)
        listing = subprocess.run([str(venv / "bin" / "klcourse"), "exercises"], **run)
        shown = subprocess.run([str(venv / "bin" / "klcourse"), "progress", "--chapter", "gaussians"], **run)
        reset = subprocess.run([str(venv / "bin" / "klcourse"), "progress", "--reset"], **run)

    assert script.returncode == 0, script.stderr[-3000:]
    out = json.loads(script.stdout.split("RESULT ", 1)[1])
    # the installed copy, not this checkout, and no torch anywhere
    assert Path(out["file"]).is_relative_to(venv), out["file"]
    assert not any(Path(p).resolve() == ROOT for p in out["sys_path"] if p)
    assert out["torch"] == "absent" and not out["torch_imported"]
    assert out["same_hint"]
    # check: two right (a choice and a function), one wrong whose message points at the hint
    (ok1, msg1), (ok2, msg2), (ok3, msg3) = out["checks"]
    assert ok1 and ok2 and not ok3, out["checks"]
    assert "hint(" not in msg1 and 'Stuck? hint("gaussians.kl-by-hand") gives a hint.' in msg3
    datasets, torch_check = out["optional"]
    assert 'pip install "klcourse[datasets]"' in datasets and TORCH_HINT in torch_check
    assert "hint(" not in datasets + torch_check
    # hints advance, and hint(id, 1) shows the first again
    assert [h[0] for h in out["hints"]] == [1, 2, 1] and out["hints"][0][2] == out["hints"][2][2]
    assert out["hints"][0][2] != out["hints"][1][2]
    # progress: the record the checks above kept, in $KLCOURSE_PROGRESS
    assert sorted(out["passed"]) == ["definitions.predict-symmetry", "gaussians.kl-gauss"]
    assert out["total"] == N_EXERCISES
    assert out["record"]["exercises"]["gaussians.kl-by-hand"] == {"attempts": 1, "passed": False}
    # the torch-only module says how to get torch
    name, message = out["vae_model"]
    assert name == "ModuleNotFoundError" and TORCH_HINT in message and "klcourse.vae_model" in message
    # the console script
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "gaussians.kl-by-hand" in listing.stdout and f"{N_EXERCISES} exercises" in listing.stdout
    assert shown.returncode == 0, shown.stderr[-2000:]
    n_gaussians = len(list_exercises("gaussians"))
    assert f"1 of {n_gaussians} exercises passed" in shown.stdout and "✅ gaussians.kl-gauss" in shown.stdout
    assert "❌ gaussians.kl-by-hand" in shown.stdout
    assert reset.returncode == 0 and "deleted" in reset.stdout
    assert not (tmp_path / "record" / "progress.json").exists()


# ----------------------------------------------------------- the optional-dependency messages, in process
def test_vae_model_without_torch_names_the_extra(monkeypatch):
    import importlib

    monkeypatch.delitem(sys.modules, "klcourse.vae_model", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if torch were not installed
    with pytest.raises(ModuleNotFoundError, match=r'klcourse\.vae_model .*pip install "klcourse\[torch\]"') as info:
        importlib.import_module("klcourse.vae_model")
    assert info.value.name == "torch"


def test_missing_and_broken_optional_packages_are_told_apart():
    from klcourse._optional import missing, missing_torch, require, require_torch

    absent = missing_torch("feature x")
    assert isinstance(absent, ModuleNotFoundError) and TORCH_HINT in str(absent) and "not installed" in str(absent)
    absent = missing_torch("feature x", ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert "not installed" in str(absent)
    # torch present but one of its own imports failing: say so, do not claim it is absent
    for cause in (ImportError("libtorch_cpu.so: cannot open shared object file"),
                  ModuleNotFoundError("No module named 'typing_extensions'", name="typing_extensions")):
        broken = missing_torch("feature x", cause)
        assert "failed to import" in str(broken) and str(cause) in str(broken) and TORCH_HINT in str(broken)
    assert 'pip install "klcourse[datasets]"' in str(missing("sklearn", "the iris data"))
    with pytest.raises(ValueError, match="unknown optional dependency"):
        missing("tensorflow", "x")
    assert require_torch().__name__ == "torch"  # this environment has torch
    with pytest.raises(ValueError, match="unknown optional dependency"):
        require("klcourse_surely_absent_module", "x")


def test_torch_functions_of_core_modules_name_the_extra(monkeypatch):
    """Core modules import without torch; their few PyTorch functions say how to get it when called."""
    from klcourse import distillation_loss
    from klcourse.asymmetry import EXAMPLE_MIXTURE, fit_reverse_gaussian, reverse_kl_hessian

    monkeypatch.setitem(sys.modules, "torch", None)
    calls = {
        "klcourse.distillation_loss": lambda: distillation_loss([[0.0, 1.0]], [[1.0, 0.0]], T=2.0),
        "klcourse.asymmetry.fit_reverse_gaussian": lambda: fit_reverse_gaussian(**EXAMPLE_MIXTURE, starts=[(0, 1)]),
        "klcourse.asymmetry.reverse_kl_hessian": lambda: reverse_kl_hessian(0.0, 1.0, **EXAMPLE_MIXTURE),
    }
    for name, call in calls.items():
        with pytest.raises(ModuleNotFoundError) as info:
            call()
        assert name in str(info.value) and TORCH_HINT in str(info.value)
