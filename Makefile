# Two commands do everything on a fresh machine:
#   make run    create .venv, install, start the Studio on http://127.0.0.1:$(PORT)
#   make test   same set-up plus the test dependencies, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 7860
HOST   ?= 127.0.0.1

.PHONY: run test install install-dev bench clean

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
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/python app.py --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/pixel_evidence.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
