#!/usr/bin/env bash
# `make test`: every check l2lb has, in order, with one summary at the end.
# Exits non-zero if any step failed. Steps keep going after a failure so one run shows everything.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
export PATH="$PWD/$VENV/bin:$PATH"
results=()
failed=0
started=$(date +%s)

step() {  # step NAME CMD... : run one step, record its outcome and duration
  local name=$1; shift
  local t0; t0=$(date +%s)
  printf '\n==== %s ====\n' "$name"
  if "$@"; then results+=("PASS  $name  ($(( $(date +%s) - t0 ))s)")
  else results+=("FAIL  $name  ($(( $(date +%s) - t0 ))s)"); failed=$((failed + 1)); fi
}

step "ruff"                 ruff check .
step "import layers"        lint-imports --config .importlinter
step "unit tests"           pytest -q tests/unit
step "lab up"               lab up
step "lab, controller, speaker, ansible (integration)" pytest -q -m lab tests/integration
step "ansible-lint, sanity, galaxy build/install/run" scripts/lint.sh --ansible
step "molecule test"        molecule test
lab down >/dev/null 2>&1 || true

printf '\n==== summary (%ss) ====\n' "$(( $(date +%s) - started ))"
printf '%s\n' "${results[@]}"
passed=$(( ${#results[@]} - failed ))
echo "make test: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
