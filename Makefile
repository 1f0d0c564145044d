# klcourse — every target sets up its own environment first, so a fresh clone needs only `make book` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
# Notebooks do small linear algebra: one BLAS thread each is faster than two fighting over two cores.
NPM_PACKAGES := katex@0.16.22 axe-core@4.14.1
# KLCOURSE_PROGRESS=off: building or testing the book runs every solution; that is no learner's progress
# (`make lab` keeps recording on). pytest runs get the same from conftest.py.
NB_ENV := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 KLCOURSE_PROGRESS=off

.PHONY: help venv book book-student pdf print-pdf test test-unit test-notebooks test-build test-site lab lint bench chromium bubblewrap clean

help:
	@echo "make book          build the website into _build/html (and its PDF, _build/html/klcourse.pdf)"
	@echo "make pdf           the whole book as one PDF (the same as make book)"
	@echo "make test          unit tests, notebooks (nbval), strict book build, browser test"
	@echo "make lab           open the notebooks in JupyterLab"
	@echo "make book-student  build the website without solutions"
	@echo "make bench         print the accuracy/speed benchmark"

# (Re)install when the venv is missing or requirements/pyproject are newer than the last install.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@# jsonschema builds ~40 grammars when this optional format checker is importable: ~1-3 s at every
	@# kernel's first glue(), paid by each notebook in each run. Nothing here validates URI formats.
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (klcourse)" >/dev/null
	@# KaTeX's CSS and fonts for the maths rendered at build time (the version sphinxcontrib-katex renders with)
	@# and axe-core for the accessibility test: from the npm registry into the venv, never from a CDN at run time.
	npm install --silent --no-audit --no-fund --no-save --prefix $(VENV)/npm $(NPM_PACKAGES)
	@touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser test; never a browser downloaded by a tool. The emoji font makes the
# screenshots show the check cells' ✅/❌ as readers' devices do (without it they are empty boxes).
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
chromium:
	@if ! test -x /usr/bin/chromium || ! test -f $(EMOJI_FONT) || ! command -v pdftotext >/dev/null; then \
		echo "Installing Debian's chromium, fonts-noto-color-emoji and poppler-utils for the browser and PDF tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$SUDO apt-get install -y -qq chromium fonts-noto-color-emoji poppler-utils >/dev/null; \
	fi
	@/usr/bin/chromium --headless --no-sandbox --version 2>/dev/null || { echo "/usr/bin/chromium does not run"; exit 1; }

# Debian's bubblewrap: the grader runs each submission in its own sandbox (PID namespace, no network, read-only
# system). The grader falls back to plain processes (and says UNSANDBOXED) where bwrap cannot run.
bubblewrap:
	@if ! command -v bwrap >/dev/null; then \
		echo "Installing Debian's bubblewrap for the grader's sandbox"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$SUDO apt-get install -y -qq bubblewrap >/dev/null; \
	fi
	@bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true 2>/dev/null \
		|| echo "bwrap cannot create namespaces here: the grader's tests check its UNSANDBOXED fallback"

book: $(STAMP) chromium
	$(NB_ENV) $(BIN)/jupyter-book build . --keep-going
	$(BIN)/python book/make_pdf.py _build/html _build/html/klcourse.pdf
	@echo "Open $(CURDIR)/_build/html/index.html in a browser; the whole book as one PDF: _build/html/klcourse.pdf"

# One PDF of the whole book (without the solutions), printed from the built site by Debian's Chromium.
pdf: book

print-pdf: $(STAMP) chromium
	$(BIN)/python book/make_pdf.py _build/html _build/html/klcourse.pdf

# The site without solutions: student notebooks, no _sources/ copies, no download or launch buttons.
book-student: $(STAMP) chromium
	$(BIN)/klcourse student _build/student-book --site
	$(NB_ENV) $(BIN)/jupyter-book build _build/student-book -W -n --keep-going
	$(BIN)/python book/make_pdf.py _build/student-book/_build/html _build/student-book/_build/html/klcourse.pdf
	@echo "Open $(CURDIR)/_build/student-book/_build/html/index.html in a browser."

# JupyterLab refuses to start for root unless told: learners in a container or a cloud VM usually are root.
# Offline: no news feed, no update check, no PyPI extension listing (tests/site/test_jupyterlab.py uses the same).
LAB_OFFLINE := --LabApp.news_url= --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	--LabApp.extension_manager=readonly
lab: $(STAMP)
	$(BIN)/jupyter lab book/ $(LAB_OFFLINE) $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

lint: $(STAMP)
	$(BIN)/ruff check klcourse tests benchmarks

test-unit: $(STAMP) bubblewrap
	$(BIN)/python -m pytest tests --ignore=tests/site -q -n 2

test-notebooks: $(STAMP)
	$(NB_ENV) $(BIN)/python -m pytest --nbval-lax -n 2 --dist loadfile --durations=0 -p no:cacheprovider $(NOTEBOOKS)

test-build: $(STAMP)
	rm -rf _build/html _build/.doctrees
	$(NB_ENV) $(BIN)/jupyter-book build . -W -n --keep-going

test-site: $(STAMP) chromium
	$(BIN)/python -m pytest tests/site -q

test: lint test-unit test-notebooks test-build print-pdf book-student test-site

bench: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf _build .pytest_cache .ruff_cache
