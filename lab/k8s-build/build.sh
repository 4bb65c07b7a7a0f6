#!/usr/bin/env bash
# Build the lab's control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from the official Go modules, cached per user and version.
# Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
cache=${L2LB_CACHE:-$HOME/.cache/l2lb}/k8s-$K8S_VERSION
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
have_all() { for b in "${bins[@]}"; do [ -x "$cache/bin/$b" ] || return 1; done; }
if have_all; then echo "$cache"; exit 0; fi

start=$(date +%s)
command -v go >/dev/null || { echo "build.sh: Go is needed to build the lab's control plane" >&2; exit 1; }
work="$cache/src"
mkdir -p "$work/etcd" "$cache/bin"
cp "$here/etcd/main.go" "$work/etcd/main.go"
cd "$work"
echo ">> lab: building Kubernetes $K8S_VERSION from Go modules into $cache (first time only; ~20-40 min on 2 cores)" >&2
if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
  rm -f go.mod go.sum
  go mod init l2lb.local/labk8s >/dev/null 2>&1
  go mod edit -go=1.26.0
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  kmod=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
  staging_v="v0.${K8S_VERSION#v1.}"
  # Every staging module (replaced by ./staging/... upstream) maps to its published v0.X.Y.
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$kmod" | awk '{print $1}' | while read -r m; do
    go mod edit -replace "$m=$m@$staging_v"
  done
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  echo ">> lab: resolving modules" >&2
  # etcd at exactly the version Kubernetes itself pins, so no dependency moves.
  etcd_v=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$kmod")
  GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$etcd_v" >&2
fi
ldflags="-s -w"
for var in gitVersion=$K8S_VERSION gitMajor=1 gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) \
           gitTreeState=clean buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ); do
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.$var"
  done
done
n=0
for b in "${bins[@]}"; do
  n=$((n + 1))
  [ -x "$cache/bin/$b" ] && continue
  t0=$(date +%s)
  echo ">> lab: [$n/${#bins[@]}] go build $b ..." >&2
  if [ "$b" = etcd ]; then pkg=./etcd; else pkg=k8s.io/kubernetes/cmd/$b; fi
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/bin/$b.tmp" "$pkg"
  mv "$cache/bin/$b.tmp" "$cache/bin/$b"
  echo ">> lab: [$n/${#bins[@]}] $b built in $(( $(date +%s) - t0 ))s" >&2
done
echo ">> lab: control plane built in $(( $(date +%s) - start ))s" >&2
echo "$cache"
