#!/usr/bin/env bash
# Build the l2lb agent's OCI image with no container registry and write an OCI archive.
#
#   scripts/build-image.sh            build (or reuse) and print archive, size and digests
#   scripts/build-image.sh --quiet    the same, printing only the archive path (the lab kubelet)
#
# Three layers, from the bottom:
#   1. debian  mmdebstrap --variant=essential of bookworm + files/image/debs.txt (python3 ...)
#   2. wheels  the agent's runtime dependencies (files/agent/pyproject.toml), pinned by
#              constraints.txt, as manylinux/pure wheels from PyPI, byte-compiled by the image's python
#   3. agent   files/agent/l2lb_agent, byte-compiled (small: rebuilt in seconds on every change)
# Layers 1+2 are "the base": cached per user in ~/.cache/l2lb/image/base-<key>, keyed by the
# hash of their inputs (this script, debs.txt, the dependency list, constraints.txt). The agent
# layer is keyed by the hash of files/agent, so an unchanged tree rebuilds nothing.
# Reproducible: tar with sorted names, mtimes clamped to SOURCE_DATE_EPOCH, numeric owners, no
# atime/ctime; pyc with checked-hash invalidation; umoci config with fixed "created". Two builds
# from the same inputs give the same layer and manifest digests, as long as the Debian archive
# and PyPI serve the same files (a Debian point release changes layer 1, and the key does not see
# it: L2LB_IMAGE_REFRESH=1 rebuilds the base on purpose).
# Needs root (mmdebstrap's root mode, chroot to byte-compile), mmdebstrap, umoci, a python3 with
# pip (the repo's .venv if present) and network access to Debian's and PyPI's archives.
# Reads (the collection tarball ships them all): $repo/scripts/build-image.sh (this file),
# $repo/files/image/debs.txt, $repo/files/agent/pyproject.toml, $repo/files/agent/l2lb_agent and
# $repo/constraints.txt.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${L2LB_IMAGE_DIR:-$repo/build/image}
cache=${L2LB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/l2lb}/image
name=${L2LB_IMAGE_NAME:-ghcr.io/l2lb/l2lb-agent}  # the name the archive carries (roles' default l2lb_image)
suite=bookworm
pyver=3.11
mirror=${L2LB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${L2LB_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}  # 2025-01-01T00:00:00Z
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
site=usr/local/lib/python$pyver/dist-packages
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1

say() { [ $quiet = 1 ] || echo ">> $*" >&2; }
die() { echo "build-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap root mode and chroot); try: sudo make image"
for tool in mmdebstrap umoci tar sha256sum; do
  command -v $tool >/dev/null || die "$tool not found: run scripts/ensure-debs.sh (Debian packages)"
done
python=$repo/.venv/bin/python
[ -x "$python" ] || python=python3
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (make venv, or install python3-pip)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/files/agent/pyproject.toml")
[ -n "$version" ] || die "files/agent/pyproject.toml: no version"

# The agent's runtime dependencies, one requirement a line, from pyproject.toml.
deps=$("$python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
  "$repo/files/agent/pyproject.toml")

# dtar DIR OUT [--owner=0 ...] PATH...: a reproducible tar of PATHs under DIR.
dtar() {
  local dir=$1 dest=$2; shift 2
  tar --create --file "$dest" --directory "$dir" --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --numeric-owner "$@"
}

build_base() {
  work=$cache/tmp-base-$$
  rm -rf "$work" && mkdir -p "$work"
  trap 'rm -rf "$work"' EXIT
  echo ">> building the image base (first run: Debian $suite + wheels, ~1-3 min; cached in $base)" >&2
  echo ">> [1/4] mmdebstrap: Debian $suite essential + $(grep -v '^#' "$repo/files/image/debs.txt" | xargs)" >&2
  local include
  include=$(grep -v '^#' "$repo/files/image/debs.txt" | xargs | tr ' ' ,)
  mmdebstrap --quiet --variant=essential --include="$include" --format=directory \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/log/* "$1"/etc/machine-id "$1"/var/cache/ldconfig/aux-cache' \
    --customize-hook='echo "l2lb:x:65532:65532:l2lb agent:/nonexistent:/usr/sbin/nologin" >> "$1"/etc/passwd' \
    --customize-hook='echo "l2lb:x:65532:" >> "$1"/etc/group' \
    "$suite" "$work/rootfs" "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $security $suite-security main" >&2
  rm -rf "$work/rootfs/dev"/*  # the runtime provides /dev
  # mmdebstrap recreates apt's lists/partial after the hooks, owned by _apt or root at random.
  rm -rf "$work/rootfs/var/lib/apt" "$work/rootfs/var/cache/apt"
  chroot "$work/rootfs" dpkg-query -W -f '${Package}=${Version}\n' | sort > "$work/debs.lock"
  dtar "$work/rootfs" "$work/debian.tar" $(cd "$work/rootfs" && ls -A | sort)

  echo ">> [2/4] wheels: $(echo $deps | xargs) (pinned by constraints.txt)" >&2
  "$python" -m pip download --quiet --disable-pip-version-check --dest "$work/wheels" --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version $pyver --implementation cp \
    -c "$repo/constraints.txt" $deps >&2
  (cd "$work/wheels" && ls *.whl | sed -E 's/^([^-]+)-([^-]+)-.*/\1==\2/' | sort) > "$work/wheels.lock"
  "$python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$work/wheels" \
    --no-deps --no-compile --target "$work/rootfs/$site" -r "$work/wheels.lock" >&2
  rm -rf "$work/rootfs/$site/bin"
  chroot "$work/rootfs" python3 -m compileall -q --invalidation-mode checked-hash "/$site" >/dev/null
  mkdir -p "$work/rootfs/usr/share/l2lb"
  { echo "# Debian packages (dpkg)"; cat "$work/debs.lock"; echo "# Python wheels (PyPI)"; cat "$work/wheels.lock"
    echo "# wheel files (sha256)"; (cd "$work/wheels" && sha256sum *.whl); } > "$work/rootfs/usr/share/l2lb/sbom.txt"
  dtar "$work/rootfs" "$work/wheels.tar" --owner=0 --group=0 --mode=u+rwX,go+rX,go-w "$site" usr/share/l2lb

  echo ">> [3/4] umoci: base layers" >&2
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:base"
  umoci raw add-layer --image "$work/oci:base" --history.created "$created" \
    --history.created_by "mmdebstrap --variant=essential $suite + debs.txt" "$work/debian.tar"
  umoci raw add-layer --image "$work/oci:base" --history.created "$created" \
    --history.created_by "pip install wheels (constraints.txt)" "$work/wheels.tar"
  rm -rf "$work/wheels" "$work"/*.tar
  mkdir -p "$cache" && rm -rf "$base" && mv "$work" "$base"
  trap - EXIT
  # Older bases are dead weight (a few hundred MB each).
  find "$cache" -maxdepth 1 -name 'base-*' ! -path "$base" -exec rm -rf {} +
}

build_agent() {
say "[4/4] agent layer $agent_key (files/agent) on base $base_key"
work=$out/tmp-$$
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
# The base layout's blobs never change: hard links make the copy instant.
cp -al "$base/oci" "$work/oci" && rm "$work/oci/index.json" && cp "$base/oci/index.json" "$work/oci/"
stage=$base/rootfs/tmp/l2lb-agent
rm -rf "$stage" && mkdir -p "$stage/$site/l2lb_agent"
cp "$repo"/files/agent/l2lb_agent/*.py "$stage/$site/l2lb_agent/"
chroot "$base/rootfs" python3 -m compileall -q --invalidation-mode checked-hash \
  -s /tmp/l2lb-agent -p / "/tmp/l2lb-agent/$site/l2lb_agent" >/dev/null
echo "l2lb-agent=$version files/agent sha256:$agent_key" > "$stage/agent.txt"
mkdir -p "$stage/usr/share/l2lb" && mv "$stage/agent.txt" "$stage/usr/share/l2lb/"
dtar "$stage" "$work/agent.tar" --owner=0 --group=0 --mode=u+rwX,go+rX,go-w "$site/l2lb_agent" usr/share/l2lb/agent.txt
rm -rf "$stage"
umoci raw add-layer --image "$work/oci:base" --tag "$version" --history.created "$created" \
  --history.created_by "files/agent/l2lb_agent ($agent_key)" "$work/agent.tar"
pkgs=$(sed -n '/^# Debian/,/^# wheel files/p' "$base/rootfs/usr/share/l2lb/sbom.txt" | grep -v '^#' | paste -sd, -)
umoci config --image "$work/oci:$version" --no-history --created "$created" --author l2lb \
  --architecture amd64 --os linux --config.user 65532:65532 --config.workingdir / \
  --clear config.entrypoint --clear config.cmd \
  --config.entrypoint python3 --config.entrypoint -m --config.entrypoint l2lb_agent --config.cmd --help \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONUNBUFFERED=1 --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.exposedports 7472/tcp --config.exposedports 7473/tcp \
  --config.label org.opencontainers.image.title=l2lb-agent \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.source=https://github.com/l2lb/l2lb \
  --config.label io.l2lb.agent-hash="$agent_key" --config.label io.l2lb.base-hash="$base_key" \
  --config.label io.l2lb.packages="$pkgs" --config.label io.l2lb.sbom=/usr/share/l2lb/sbom.txt
umoci rm --image "$work/oci:base"
umoci gc --layout "$work/oci"
# An OCI archive is a tar of the layout (podman load, skopeo copy oci-archive:, ctr import). Its
# index names the image in full, so a sideloaded image is found under l2lb_image; the layout in
# build/image/oci keeps the short tag that umoci (and the lab kubelet) address it by.
mkdir -p "$work/archive" && cp -al "$work/oci/blobs" "$work/oci/oci-layout" "$work/archive/"
"$python" -c 'import json, sys
index = json.load(open(sys.argv[1]))
for m in index["manifests"]:
    m.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = sys.argv[2]
print(json.dumps(index, separators=(",", ":")), end="")' "$work/oci/index.json" "$name:$version" > "$work/archive/index.json"
dtar "$work/archive" "$work/archive.tar" --owner=0 --group=0 --mode=u+rwX,go+rX,go-w oci-layout index.json blobs
rm -rf "$out/oci" && mv "$work/oci" "$out/oci" && mv "$work/archive.tar" "$archive"
echo "$agent_key" > "$stamp"
rm -rf "$work"
trap - EXIT
}

hash_of() { sha256sum | cut -c1-16; }
# The base's key covers its recipe (the functions below), not the rest of this script.
base_key=$( { declare -f build_base dtar; cat "$repo/files/image/debs.txt" "$repo/constraints.txt"
  echo "$deps $suite $mirror $security ${L2LB_IMAGE_REFRESH:+$(date +%s)}"; } | hash_of)
agent_key=$( (cd "$repo/files/agent" && find l2lb_agent -name '*.py' -print0 | sort -z | xargs -0 sha256sum;
  declare -f build_agent; echo "$base_key $version $name") | hash_of)
base=$cache/base-$base_key
archive=$out/l2lb-agent-$version.oci.tar
stamp=$out/.agent-key

mkdir -p "$cache" "$out"
exec 9>"$cache/.lock"
flock 9  # one build at a time per user (the lab's three kubelets may ask at once)

fresh=0
if [ -f "$archive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$agent_key" ] && [ -f "$base/oci/index.json" ]; then
  fresh=1
  say "image is up to date (agent $agent_key, base $base_key)"
fi

[ -f "$base/oci/index.json" ] || build_base
[ $fresh = 1 ] || build_agent
[ $quiet = 1 ] && echo "$archive" && exit 0
manifest=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$out/oci/index.json")
echo "image:    $name:$version (OCI archive; layout build/image/oci, tag $version)"
echo "archive:  $archive ($(du -h --apparent-size "$archive" | cut -f1))"
echo "manifest: $manifest"
"$python" - "$out/oci" "$manifest" <<'EOF'
import json, sys
layout, digest = sys.argv[1], sys.argv[2]
blob = lambda d: json.load(open(f"{layout}/blobs/{d.replace(':', '/')}"))
man = blob(digest)
for name, layer in zip(("debian", "wheels", "agent"), man["layers"]):
    print(f"layer:    {name:7} {layer['digest']} {layer['size'] / 1e6:6.1f} MB")
print(f"total:    {sum(l['size'] for l in man['layers']) / 1e6:.1f} MB compressed")
EOF
