"""The setup cell that lets a chapter run outside the repository (Colab, Binder, a learner's own Jupyter).

Every chapter notebook has the same code cell right after its title (tag ``remove-cell``: the website does not
show it), before any other code. It
installs what the chapter imports only when it is missing: the course's library ``klcourse`` (with the extras the
chapter needs, at the book's version, from the repository) and the chapter's PyTorch or scikit-learn. The
chapters' prose numbers need no myst-nb in a learner's kernel (``klcourse.prose`` keeps them). Where
everything is importable — this repository's ``.venv``, the book build, nbval, the grader's sandbox — it does
nothing and needs no network. ``KLCOURSE_SOURCE`` names another klcourse to install (a wheel, a folder or a URL).

This file also writes the cell: ``python tests/test_learner_setup.py`` inserts it after the title of every
chapter that lacks it, or rewrites it where it differs (each notebook loaded, changed and written back at once).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
CELL_ID = "klcourse-setup"
TAG = "remove-cell"
REPOSITORY = "https://github.com/klcourse/klcourse"
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)[1]

# module imported by a chapter -> the klcourse extra that installs it
EXTRAS = {"torch": "torch", "sklearn": "datasets"}


def chapter_extras(nb: dict) -> list[str]:
    """The extras a chapter needs, read from what its code imports or loads."""
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    found = set()
    if re.search(r"^\s*(import|from)\s+torch\b", code, re.M):
        found.add("torch")
    if re.search(r"^\s*(import|from)\s+sklearn\b", code, re.M) or re.search(r"load_(digits|iris)", code):
        found.add("datasets")
    if "vae_model" in code:  # its models are PyTorch, its data scikit-learn's digits
        found.update(("torch", "datasets"))
    return sorted(found)


def setup_source(extras: list[str]) -> str:
    """The setup cell of a chapter that needs ``extras``."""
    spec = f"klcourse[{','.join(extras)}]" if extras else "klcourse"
    modules = {"klcourse": f"{spec} @ {{source}}"}
    for module, extra in EXTRAS.items():
        if extra in extras:
            modules[module] = {"torch": "torch>=2.1", "sklearn": "scikit-learn"}[module]
    needs = "\n".join(f'    "{module}": "{req}",' for module, req in modules.items())
    return f'''\
# Setup for running this chapter outside the course's repository (Colab, Binder, your
# own Jupyter): installs what the chapter imports, once, and only what is missing. Where
# all of it is importable (the repository's `make lab`, the website's build) it does
# nothing. KLCOURSE_SOURCE may name another klcourse to install: a wheel, folder or URL.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

KLCOURSE = "git+{REPOSITORY}@v{VERSION}"  # the book's version
NEEDS = {{
{needs}
}}
missing = [req for module, req in NEEDS.items()
           if importlib.util.find_spec(module) is None]
if missing:
    source = os.environ.get("KLCOURSE_SOURCE", KLCOURSE)
    if Path(source).exists():
        source = Path(source).resolve().as_uri()
    missing = [req.format(source=source) for req in missing]
    print("Installing", ", ".join(missing), "(a minute or two, once per session)")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError("pip could not install them:\\n" + pip.stderr[-3000:])
    importlib.invalidate_caches()
    print("Done.")'''


def setup_cell(extras: list[str]) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": CELL_ID, "metadata": {"tags": [TAG]},
            "outputs": [], "source": setup_source(extras).splitlines(keepends=True)}


def _is_title(cell: dict) -> bool:
    return cell["cell_type"] == "markdown" and "".join(cell["source"]).lstrip().startswith("# ")


def write_setup_cells(paths=NOTEBOOKS) -> list[Path]:
    """Insert (or refresh) the setup cell of each chapter; returns the notebooks changed. Idempotent."""
    changed = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        cell = setup_cell(chapter_extras(nb))
        others = [c for c in nb["cells"] if c.get("id") != CELL_ID]
        title = next(i for i, c in enumerate(others) if _is_title(c))
        if any(c["cell_type"] == "code" for c in others[:title]):
            raise ValueError(f"{path.name}: code before the title cell; the setup cell must run first")
        nb["cells"] = [*others[:title + 1], cell, *others[title + 1:]]
        new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


# ---------------------------------------------------------------------------------------------- the tests
def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _setup(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c.get("id") == CELL_ID)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_opens_with_its_title_then_the_setup_cell(path):
    nb = _nb(path)
    # the title first (what a reader of the notebook sees), then the setup cell before any other code
    title = nb["cells"][0]
    assert _is_title(title), f"{path.name}: the first cell is not the '# ' title"
    first = nb["cells"][1]
    assert first.get("id") == CELL_ID, f"{path.name}: run `python tests/test_learner_setup.py`"
    assert first["cell_type"] == "code" and first["metadata"].get("tags") == [TAG]
    assert first["outputs"] == [] and first["execution_count"] is None
    # exactly the cell this file writes: the book's version and the chapter's extras
    assert "".join(first["source"]) == setup_source(chapter_extras(nb)), \
        f"{path.name}: setup cell out of date; run `python tests/test_learner_setup.py`"
    assert sum(c.get("id") == CELL_ID for c in nb["cells"]) == 1
    assert all(len(line.rstrip("\n")) <= 88 for line in first["source"])


def test_setup_cell_pins_the_book_version_and_the_chapter_extras():
    source = "".join(_setup(_nb(ROOT / "book" / "04_asymmetry.ipynb"))["source"])
    assert f'"git+{REPOSITORY}@v{VERSION}"' in source
    assert '"klcourse[torch] @ {source}"' in source and '"torch": "torch>=2.1"' in source
    source = "".join(_setup(_nb(ROOT / "book" / "07_em.ipynb"))["source"])
    assert '"klcourse[datasets] @ {source}"' in source and '"sklearn": "scikit-learn"' in source
    assert "torch" not in source
    source = "".join(_setup(_nb(ROOT / "book" / "01_definitions.ipynb"))["source"])
    assert '"klcourse @ {source}"' in source and "torch" not in source and "sklearn" not in source
    # every chapter that imports torch or loads scikit-learn's data asks for the extra (README: 4-6, 8, 9 and 2, 6-8)
    extras = {p.stem[:2]: chapter_extras(_nb(p)) for p in NOTEBOOKS}
    assert [k for k, v in extras.items() if "torch" in v][:5] == ["04", "05", "06", "08", "09"]
    assert [k for k, v in extras.items() if "datasets" in v][:4] == ["02", "06", "07", "08"]


def _run_cell(source: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=120, env=env,
                          cwd=cwd)


def test_setup_cell_is_inert_where_everything_is_importable(tmp_path):
    """In this environment: no pip, no network, no output."""
    source = setup_source(["datasets", "torch"])
    env = {**os.environ, "KLCOURSE_SOURCE": str(tmp_path / "no-such.whl"), "PIP_NO_INDEX": "1"}
    done = _run_cell(source + "\nprint('MISSING', missing)", env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "MISSING []\n"


def test_setup_cell_reports_a_failed_install(tmp_path):
    """A package that cannot be installed: a RuntimeError quoting pip, not a silent notebook."""
    source = setup_source([]).replace('    "klcourse":', '    "klcourse_surely_absent_module": "x",\n    "klcourse":')
    assert "klcourse_surely_absent_module" in source
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    done = _run_cell(source, env, tmp_path)
    assert done.returncode != 0
    assert "Installing x" in done.stdout and "RuntimeError: pip could not install them" in done.stderr


def _pins(path: Path) -> dict:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_binder_installs_only_the_runtime_at_the_book_versions():
    """binder/ (read by Binder instead of the root) holds what a learner's session runs, pinned as in the root
    requirements.txt; postBuild installs klcourse from the checkout."""
    binder, root = _pins(ROOT / "binder" / "requirements.txt"), _pins(ROOT / "requirements.txt")
    runtime = {"torch", "numpy", "scipy", "matplotlib", "scikit-learn", "mpmath", "jupyterlab",
               "jupyterlab-myst", "ipykernel"}
    assert set(binder) == runtime
    assert {name: root.get(name) for name in binder} == binder  # same versions as the tested stack
    text = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text  # CPU torch, not gigabytes of CUDA
    for tool in ("jupyter-book", "myst-nb", "pytest", "playwright", "ruff", "nbval", "hypothesis"):
        assert tool not in binder
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK) and "pip install --no-cache-dir --no-deps ." in post.read_text()
    # NumPy 2.4 needs Python 3.11 or later (Binder's default may be older)
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime) and int(runtime.split(".")[1]) >= 11, runtime
    # every module a chapter imports is installed there
    imported = set()
    for path in NOTEBOOKS:
        for cell in _nb(path)["cells"]:
            if cell["cell_type"] == "code":
                imported |= set(re.findall(r"^\s*(?:from|import)\s+(\w+)", "".join(cell["source"]), re.M))
    provided = {"torch", "numpy", "scipy", "matplotlib", "sklearn", "mpmath", "IPython", "klcourse"}  # no myst_nb
    assert imported - provided <= set(sys.stdlib_module_names), imported - provided - set(sys.stdlib_module_names)


# ------------------------------------------------- a chapter in a kernel where klcourse is not installed
def _bare_venv(tmp: Path) -> Path:
    """A venv without klcourse or myst-nb that sees this environment's other packages (numpy, ipykernel, pip,
    torch…) through a .pth line. That line puts the directory on sys.path without reading the .pth files in it,
    so the editable install of klcourse that lives there is not importable."""
    venv = tmp / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "shared-env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # and no myst-nb, as in Colab: a learner's kernel must not need it (the prose numbers come from klcourse.prose)
    (Path(purelib) / "no-myst-nb.pth").write_text("import sys; sys.modules['myst_nb'] = None\n")
    return venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"  # a copy of the package's source: building it writes nothing into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "klcourse", source / "klcourse", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(out), "-q"],
                            capture_output=True, text=True, timeout=300, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("klcourse-*.whl")
    return built


EXECUTE = r'''
import json, sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name="bare-klcourse", timeout=180, resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
'''

PROBE = ("import json, klcourse, importlib.metadata as m; "
         "print(json.dumps([klcourse.__file__, m.distribution('klcourse').read_text('direct_url.json')]))")


def test_a_chapter_runs_where_klcourse_is_not_installed(wheel, tmp_path):
    """Chapter 1 copied out of the repository, executed in a kernel without klcourse: the setup cell installs the
    built wheel named by KLCOURSE_SOURCE (offline: PIP_NO_INDEX) and every cell after it runs."""
    venv = _bare_venv(tmp_path)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    kernels = tmp_path / "jupyter" / "kernels" / "bare-klcourse"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bare", "language": "python"}))
    env.update(JUPYTER_PATH=str(tmp_path / "jupyter"), HOME=str(tmp_path), KLCOURSE_SOURCE=str(wheel),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", KLCOURSE_PROGRESS="off", MPLBACKEND="Agg",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    work = tmp_path / "learner"
    work.mkdir()
    chapter = work / NOTEBOOKS[0].name
    chapter.write_text(NOTEBOOKS[0].read_text(encoding="utf-8"), encoding="utf-8")

    before = subprocess.run([str(python), "-c", "import klcourse"], capture_output=True, text=True, env=env,
                            cwd=work, timeout=60)
    assert before.returncode != 0 and "No module named 'klcourse'" in before.stderr
    no_myst = subprocess.run([str(python), "-c", "import myst_nb"], capture_output=True, text=True, env=env,
                             cwd=work, timeout=60)
    assert no_myst.returncode != 0 and "ModuleNotFoundError" in no_myst.stderr
    run = subprocess.run([str(python), "-c", EXECUTE, str(chapter), str(work)], capture_output=True, text=True,
                         env=env, cwd=work, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]

    nb = _nb(chapter)
    setup = next(c for c in nb["cells"] if c.get("id") == CELL_ID)
    setup_out = "".join("".join(o.get("text", "")) for o in setup["outputs"])
    assert "Installing klcourse @ file://" in setup_out and "Done." in setup_out, setup_out
    assert all(c["execution_count"] is not None for c in nb["cells"] if c["cell_type"] == "code")
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    # the chapter's check cells ran against the installed wheel, not this checkout
    checks = [c for c in nb["cells"] if c["cell_type"] == "code" and "check(" in "".join(c["source"])]
    assert checks and all(c["outputs"] for c in checks)
    probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, env=env, cwd=work,
                           timeout=60)
    assert probe.returncode == 0, probe.stderr[-2000:]
    where, direct_url = json.loads(probe.stdout)
    assert Path(where).is_relative_to(venv) and wheel.name in json.loads(direct_url)["url"]


if __name__ == "__main__":
    for changed in write_setup_cells():
        print("setup cell written:", changed.relative_to(ROOT))
