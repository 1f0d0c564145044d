# klcourse — every target sets up its own environment first, so a fresh clone needs only `make book` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

.PHONY: help venv book book-student test test-unit test-notebooks test-build test-site lab lint bench chromium clean

help:
	@echo "make book          build the website into _build/html"
	@echo "make test          unit tests, notebooks (nbval), strict book build, browser test"
	@echo "make lab           open the notebooks in JupyterLab"
	@echo "make book-student  build the website without solutions"
	@echo "make bench         print the accuracy/speed benchmark"

# (Re)install when the venv is missing or requirements/pyproject are newer than the last install.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (klcourse)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser test; never a browser downloaded by a tool.
chromium:
	@if ! test -x /usr/bin/chromium; then \
		echo "Installing Debian's chromium for the browser test"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

book: $(STAMP)
	$(BIN)/jupyter-book build . --keep-going
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

# The site without solutions: student notebooks, no _sources/ copies, no download or launch buttons.
book-student: $(STAMP)
	$(BIN)/klcourse student _build/student-book --site
	$(BIN)/jupyter-book build _build/student-book -W -n --keep-going
	@echo "Open $(CURDIR)/_build/student-book/_build/html/index.html in a browser."

lab: $(STAMP)
	$(BIN)/jupyter lab book/

lint: $(STAMP)
	$(BIN)/ruff check klcourse tests benchmarks

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/site -q -n 2

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --durations=0 -p no:cacheprovider $(NOTEBOOKS)

test-build: $(STAMP)
	rm -rf _build/html _build/.doctrees
	$(BIN)/jupyter-book build . -W -n --keep-going

test-site: $(STAMP) chromium
	$(BIN)/python -m pytest tests/site -q

test: lint test-unit test-notebooks test-build book-student test-site

bench: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf _build .pytest_cache .ruff_cache
