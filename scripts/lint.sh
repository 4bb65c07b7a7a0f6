#!/usr/bin/env bash
# Quality gates for the repo (the Makefile's `lint` target):
#   1. ruff on all Python
#   2. ansible-lint, production profile
#   3. ansible-galaxy collection build + install into a temp dir
#   4. ansible-test sanity --python 3.11 on the installed copy (empty ignore files)
#   5. the installed collection's own site playbook against the lab (only when the lab runs,
#      or when L2LB_LINT_RUN=1 forces it; L2LB_LINT_RUN=0 skips it)
# ansible-test builds one venv per sanity test, with its own exact pins (ansible_test/_data/
# requirements/sanity.*.txt), installed by pip from PyPI; its pip bootstrap normally comes from
# ci-files.testing.ansible.com, which is unreachable here, so scripts/ansible_test_get_pip.py
# stands in for it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
export PATH=$BIN:$PATH
step() { printf '\n>> lint: %s\n' "$*"; }

step "ruff"
ruff check .

step "ansible-lint (production profile)"
ansible-lint --profile production --offline -q

WORK=$(mktemp -d /tmp/l2lb-lint.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
step "ansible-galaxy collection build + install into $WORK"
ansible-galaxy collection build --force --output-path "$WORK" . >/dev/null
TARBALL=$(ls "$WORK"/l2lb-layer2-*.tar.gz)
(cd "$WORK" && ansible-galaxy collection install --force -p "$WORK/inst" "$TARBALL" >/dev/null)
INSTALLED=$WORK/inst/ansible_collections/l2lb/layer2
for f in tests/sanity/ignore-*.txt; do
  if [ -s "$f" ]; then echo "lint: $f must stay empty" >&2; exit 1; fi
done

step "ansible-test sanity --python 3.11"
GET_PIP_CACHE=$HOME/.ansible/test/cache
mkdir -p "$GET_PIP_CACHE"
for v in 24_2; do
  cmp -s scripts/ansible_test_get_pip.py "$GET_PIP_CACHE/get_pip_$v.py" \
    || cp scripts/ansible_test_get_pip.py "$GET_PIP_CACHE/get_pip_$v.py"
done
(cd "$INSTALLED" && git init -q . && ansible-test sanity --python 3.11 --color no)

run=${L2LB_LINT_RUN:-auto}
if [ "$run" = auto ]; then
  if lab status >/dev/null 2>&1; then run=1; else run=0; fi
fi
if [ "$run" = 1 ]; then
  step "installed collection: ansible-playbook l2lb.layer2.site -i inventory/lab"
  (cd "$WORK" && ANSIBLE_COLLECTIONS_PATH="$WORK/inst" \
    ansible-playbook -i "$REPO/inventory/lab" l2lb.layer2.site)
else
  step "skipped running the installed collection (lab not up; L2LB_LINT_RUN=1 to force)"
fi
step "all gates passed"
