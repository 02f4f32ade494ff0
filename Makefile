# Two commands do all the set-up (see README):
#   make report   installs into .venv if needed, validates the sample study and renders every district's report
#   make test     installs into .venv if needed and runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: report test install clean-derived

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/casestudy validate
	$(BIN)/casestudy report --all

test: $(STAMP)
	$(BIN)/python -m pytest

clean-derived:
	rm -rf .casestudy reports
