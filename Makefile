# l2lb: the two commands are `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
K8S_BUILD := lab/k8s-build/build.sh

.PHONY: venv debs k8s image lab-up lab-down lab-status demo test test-unit test-lab lint bench bench-scale clean

$(STAMP): requirements.txt constraints.txt files/agent/pyproject.toml lab/pyproject.toml
	@echo ">> creating $(VENV) with pinned Python packages"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --disable-pip-version-check --progress-bar off -r requirements.txt -c constraints.txt \
		| sed -nE '/^(Collecting|Successfully installed)/p' | cut -c1-120
	@$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e files/agent -e lab
	@touch $(STAMP)

venv: $(STAMP)

debs:
	@scripts/ensure-debs.sh

k8s:
	@$(K8S_BUILD) >/dev/null

# The agent's OCI image (build/image/l2lb-agent-VERSION.oci.tar); the lab runs its Pods from it.
image: venv debs
	@scripts/build-image.sh

lab-up: venv debs k8s image
	@$(VENV)/bin/lab up

lab-down:
	@if [ -x $(VENV)/bin/lab ]; then $(VENV)/bin/lab down; else scripts/lab-down-fallback.sh; fi

lab-status: venv
	@$(VENV)/bin/lab status

demo: venv debs k8s image
	@scripts/demo.sh

test: venv debs k8s image
	@scripts/test.sh

test-unit: venv
	@$(VENV)/bin/pytest -q tests/unit

lint: venv
	@scripts/lint.sh

bench: venv debs k8s image
	@$(PY) -m tests.bench

# Issue 12: 10,000 Services (~40 min on the 2-core lab, bound by its API server; L2LB_SCALE_SERVICES=2000
# takes ~10); takes the lab lock itself. L2LB_SCALE_SERVICES / _TRIALS.
bench-scale: venv debs k8s image
	@flock /tmp/l2lb-shared-lab.lock $(VENV)/bin/lab up
	@$(PY) -m tests.bench.scale_bench

clean: lab-down
	rm -rf $(VENV) .pytest_cache .ruff_cache
