# Two commands on a fresh machine with only python3: `make lab` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all test test-fast reliability lab lab-full serve bench yardsticks clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m 'not slow' -x

# Runs tests/reliability and writes RELIABILITY.md (the scenario x model matrix) from the results.
reliability: $(STAMP)
	$(BIN)/python benchmarks/reliability_matrix.py

lab: $(STAMP)
	$(BIN)/iomodels lab --quick

lab-full: $(STAMP)
	$(BIN)/iomodels lab --full

serve: $(STAMP)
	$(BIN)/iomodels serve --model epoll

# The C yardsticks the benchmarks measure against (benchmarks/c/): needs make and a C compiler.
YARDSTICKS := build/yardsticks
yardsticks:
	$(MAKE) -s -C benchmarks/c OUT=$(CURDIR)/$(YARDSTICKS)

clean:
	rm -rf build $(VENV) lab-report .pytest_cache .hypothesis
