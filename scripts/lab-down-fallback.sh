#!/usr/bin/env bash
# `make lab-down` when .venv (and so the `lab` command) is missing: the same teardown in plain shell.
# Stops every process in the lab's namespaces and every process whose command line mentions
# <repo>/.lab/ (control plane, host forwarder), then removes the namespaces and .lab.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
state="$repo/.lab/"
namespaces=(l2lb-node1 l2lb-node2 l2lb-node3 l2lb-client l2lb-lan)
[ "$(id -u)" = 0 ] || { echo "lab-down-fallback: must run as root" >&2; exit 1; }

lab_pids() {
  for ns in "${namespaces[@]}"; do ip netns pids "$ns" 2>/dev/null; done
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    [ "$pid" = $$ ] && continue
    tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "$state" && echo "$pid"
  done
}

alive() {  # the pids given that still exist and are not zombies
  for p in "$@"; do
    st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
    [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
  done
}

stop_all() {  # SIGTERM, up to 3 s grace, then SIGKILL
  local pids left
  pids=$(lab_pids | sort -u)
  [ -z "$pids" ] && return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null
  for _ in $(seq 30); do left=$(alive $pids); [ -z "$left" ] && return 0; sleep 0.1; done
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null
  for _ in $(seq 20); do left=$(alive $left); [ -z "$left" ] && return 0; sleep 0.1; done
  echo "lab-down-fallback: processes survived SIGKILL: $left" >&2
  return 1
}

stop_all || exit 1
for ns in "${namespaces[@]}"; do
  if [ -e "/run/netns/$ns" ]; then ip netns del "$ns" || exit 1; fi
done
rm -rf "$state"
echo ">> lab: down (fallback): namespaces and .lab removed"
