# The two commands of the README: `make bench` (set up + the 10^5 baseline) and `make test` (set up + tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system-deps test test-fast lint bench up clean-state

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml locustfiles/help_hook.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m locustfiles.help_hook install
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/install_system_deps.sh

lint: venv
	$(BIN)/ruff check .

test: venv system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --timeout=900

# The inner loop: everything but the slow and browser tests.
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --timeout=900 -m "not slow and not browser"

bench: venv
	$(BIN)/memload matrix

up: venv
	$(BIN)/memload up

clean-state:
	-$(BIN)/memload db stop
	rm -rf .memload
