# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both first run tools/install.sh, which takes seconds when the environment is already there.
VENV ?= $(or $(SAIP_VENV),$(CURDIR)/.venv)
PYTHON := $(VENV)/bin/python

.PHONY: env test demo

env:
	SAIP_VENV="$(VENV)" tools/install.sh

test: env
	$(PYTHON) -m pytest tests -q

demo: env
	PYTHON="$(PYTHON)" tools/demo.sh
