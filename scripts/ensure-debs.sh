#!/usr/bin/env bash
# Install the Debian packages the lab and tests need, only those missing.
set -euo pipefail
pkgs=(nginx-light iproute2 iputils-arping iputils-ping curl openssl procps psmisc tcpdump
  mmdebstrap umoci runc skopeo golang-github-containers-common)  # the agent image, built and run
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ensure-debs: missing Debian packages ${missing[*]} and not root: install them or run as root" >&2
  exit 1
fi
echo ">> installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
# Debian's nginx starts a host-wide server on install; the lab runs its own per pod.
if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then systemctl stop nginx || true; fi
pkill -x nginx 2>/dev/null || true
