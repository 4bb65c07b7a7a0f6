"""The agent image `make image` builds (scripts/build-image.sh): what a registry and a node get.

Runs the real build (warm: the base is cached in ~/.cache/l2lb/image; a cold one downloads
Debian's and PyPI's packages, about a minute) and reads the result with skopeo and tarfile,
the way `skopeo copy` / `podman load` read it. Needs root (mmdebstrap, chroot).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-image.sh"
LAYOUT = REPO / "build" / "image" / "oci"
MAX_COMPRESSED = 80 * 10**6  # bytes: Debian's python3 + the wheels + the agent, ~49 MB today


def build() -> Path:
    out = subprocess.run([str(BUILD), "--quiet"], capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return Path(out.stdout.strip())


def blob(digest: str) -> Path:
    return LAYOUT / "blobs" / "sha256" / digest.split(":", 1)[1]


def skopeo(*args: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def archive() -> Path:
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is missing: run scripts/ensure-debs.sh")
    return build()


def manifest_digest() -> str:
    return json.loads((LAYOUT / "index.json").read_text())["manifests"][0]["digest"]


def test_archive_is_an_oci_image_that_skopeo_reads_with_a_non_root_user(archive):
    info = skopeo("inspect", f"oci-archive:{archive}")
    config = skopeo("inspect", "--config", f"oci-archive:{archive}")["config"]
    assert info["Digest"] == manifest_digest()
    assert len(info["Layers"]) == 3  # debian, wheels, agent
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["python3", "-m", "l2lb_agent"]
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"].endswith(
        "/l2lb-agent:0.1.0")  # podman load names the image so


def test_image_is_small_and_lists_its_exact_packages(archive):
    manifest = json.loads(blob(manifest_digest()).read_text())
    assert sum(layer["size"] for layer in manifest["layers"]) < MAX_COMPRESSED
    labels = json.loads(blob(manifest["config"]["digest"]).read_text())["config"]["Labels"]
    packages = set(labels["io.l2lb.packages"].split(","))
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    pins = {line.strip().lower().replace("_", "-") for line in constraints if "==" in line}
    wheels = {p.lower().replace("_", "-") for p in packages if "==" in p}
    assert {"pyyaml==6.0.4", "jsonschema==4.26.0"} <= wheels
    assert not any(w.startswith("scapy==") for w in wheels)  # frames are built with struct
    assert not any(w.startswith("urllib3==") for w in wheels)  # HTTP/1.1 is l2lb_agent.transport
    assert wheels <= pins  # every wheel exactly as constraints.txt pins it
    assert {p.split("=", 1)[0] for p in packages} >= {"python3.11", "libc6", "ca-certificates"}
    with tarfile.open(blob(manifest["layers"][1]["digest"])) as wheels_layer:
        sbom = wheels_layer.extractfile("usr/share/l2lb/sbom.txt").read().decode()
    assert "# Debian packages (dpkg)" in sbom and "pyyaml==6.0.4" in sbom


def test_agent_layer_holds_the_checkout_agent_and_rebuilds_identically(archive):
    manifest = json.loads(blob(manifest_digest()).read_text())
    with tarfile.open(blob(manifest["layers"][2]["digest"])) as agent:
        names = set(agent.getnames())
        owners = {(m.uid, m.gid) for m in agent.getmembers()}
    site = "usr/local/lib/python3.11/dist-packages/l2lb_agent"
    sources = {p.name for p in (REPO / "files" / "agent" / "l2lb_agent").glob("*.py")}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith(site) and n.endswith(".py")} == sources
    assert any(n.endswith(".pyc") for n in names)  # byte-compiled: a read-only root needs no cache
    assert owners == {(0, 0)}
    stamp = REPO / "build" / "image" / ".agent-key"
    for _ in range(3):  # other engineers edit files/agent all day: compare builds of one tree
        before, key = manifest_digest(), stamp.read_text()
        stamp.unlink()  # force the agent layer to be built again
        build()
        if stamp.read_text() == key:
            break
    else:
        pytest.fail("files/agent kept changing during three rebuilds")
    assert manifest_digest() == before  # same inputs, same bytes (sorted tar, fixed mtimes)
