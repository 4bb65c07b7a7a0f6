#!/usr/bin/env bash
# Quality gates for the repo (the Makefile's `lint` target). `--ansible`: only the Ansible gates
# (2-5), for callers that ran ruff already (scripts/test.sh).
#   1. ruff on all Python
#   2. ansible-lint, production profile
#   3. ansible-galaxy collection build + install into a temp dir
#   4. ansible-test sanity --python 3.11 on the installed copy (ignore files must stay empty)
#   5. the installed collection's own site playbook against the lab (when the lab runs, or
#      L2LB_LINT_RUN=1 to insist; L2LB_LINT_RUN=0 skips it)
# Every gate runs even if an earlier one failed; the exit status says whether all passed.
# ansible-test builds one venv per sanity test with its own exact pins (ansible_test/_data/
# requirements/sanity.*.txt), installed by pip from PyPI. Its pip bootstrap normally comes from
# ci-files.testing.ansible.com, unreachable here: scripts/ansible_test_get_pip.py stands in.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
failed=()
gate() {  # gate NAME CMD... : run one gate, remember a failure
  local name=$1; shift
  printf '\n>> lint: %s\n' "$name"
  "$@" || failed+=("$name")
}

if [ "${1:-}" != --ansible ]; then
  gate "ruff" "$BIN/ruff" check .
fi
gate "ansible-lint (production profile)" "$BIN/ansible-lint" --profile production --offline -q

WORK=$(mktemp -d /tmp/l2lb-lint.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
INSTALLED=$WORK/inst/ansible_collections/l2lb/layer2

build_and_install() {
  "$BIN/ansible-galaxy" collection build --force --output-path "$WORK" . >/dev/null || return 1
  (cd "$WORK" && ANSIBLE_COLLECTIONS_PATH="$WORK/inst" "$BIN/ansible-galaxy" collection install \
    --force -p "$WORK/inst" "$WORK"/l2lb-layer2-*.tar.gz >/dev/null)
}

sanity() {
  local f cache=$HOME/.ansible/test/cache
  for f in tests/sanity/ignore-*.txt; do
    if [ -s "$f" ]; then echo "lint: $f must stay empty" >&2; return 1; fi
  done
  mkdir -p "$cache"
  cmp -s scripts/ansible_test_get_pip.py "$cache/get_pip_24_2.py" \
    || cp scripts/ansible_test_get_pip.py "$cache/get_pip_24_2.py"
  (cd "$INSTALLED" && git init -q . && PATH="$BIN:$PATH" "$BIN/ansible-test" sanity --python 3.11 --color no)
}

run_installed() {  # deploy, then remove again with the installed uninstall playbook
  (cd "$WORK" && export ANSIBLE_COLLECTIONS_PATH="$WORK/inst" \
    && "$BIN/ansible-playbook" -i "$REPO/inventory/lab" l2lb.layer2.site \
    && "$BIN/ansible-playbook" -i "$REPO/inventory/lab" l2lb.layer2.uninstall)
}

gate "ansible-galaxy collection build + install" build_and_install
if [ -d "$INSTALLED" ]; then
  gate "ansible-test sanity --python 3.11 (installed copy)" sanity
  run=${L2LB_LINT_RUN:-auto}
  if [ "$run" = auto ]; then
    if "$BIN/lab" status >/dev/null 2>&1; then run=1; else run=0; fi
  fi
  if [ "$run" = 1 ]; then
    gate "installed collection: l2lb.layer2.site then l2lb.layer2.uninstall on the lab" run_installed
  else
    printf '\n>> lint: skipped running the installed collection (lab not up; L2LB_LINT_RUN=1 to insist)\n'
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf '\n>> lint: FAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\n>> lint: all gates passed\n'
