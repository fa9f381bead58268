# Two commands do everything on a fresh machine:
#   make run    create .venv, install, start the Studio on http://127.0.0.1:$(PORT)
#   make test   same set-up plus the test dependencies, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 7860
HOST   ?= 127.0.0.1

.PHONY: run test lint install install-dev system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps make re-runs instant; they are rebuilt when a requirements file changes.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev system-deps

# Browser tests drive Debian's Chromium (playwright never downloads a browser here).
system-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "error: Chromium is missing; install it (sudo apt-get install -y chromium) and rerun"; \
		exit 1; \
	fi

run: install
	$(BIN)/python app.py --host $(HOST) --port $(PORT) $(if $(BACKEND),--backend $(BACKEND))

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/pixel_evidence.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
