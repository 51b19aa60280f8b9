# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both first run tools/install.sh, which takes seconds when the environment is already there.
VENV ?= $(or $(SAIP_VENV),$(CURDIR)/.venv)
PYTHON := $(VENV)/bin/python

.PHONY: env test demo compare

env:
	SAIP_VENV="$(VENV)" tools/install.sh

test: env
	$(PYTHON) -m pytest tests -q

demo: env
	PYTHON="$(PYTHON)" tools/demo.sh

# Equal-budget comparison of pretraining methods on the demo data (builds it when missing):
# SAIP, its six ablations, MAE and random init, 2 seeds; resumes in work_dirs/compare_cpu.
compare: env
	$(PYTHON) tools/dataset_converters/video_to_persons.py --out data/vtest --frame-step 2
	$(PYTHON) tools/analysis_tools/compare_pretraining.py --preset cpu
