"""The collection tarball: built by the real `ansible-galaxy collection build`, it carries the
license galaxy.yml names and everything the image build reads, and no caches, state or venvs.

The image build's inputs are read from scripts/build-image.sh itself (every "$repo/<path>" it
names), so a new input there fails this test until build_ignore lets it into the tarball.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
TOP_LEVEL = (".venv/", ".lab/", ".cache/", "bench-results/", "build/", "collections/", "lab/", ".git/")
ANYWHERE = ("__pycache__/", ".pytest_cache/", ".ruff_cache/", ".import_linter_cache/", ".egg-info/")
NOT_INPUTS = (".venv/", "build/")  # the build's own tools and output directory


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("galaxy")
    subprocess.run([str(REPO / ".venv" / "bin" / "ansible-galaxy"), "collection", "build", "--force",
                    "--output-path", str(out), str(REPO)], check=True, capture_output=True, timeout=120)
    (tarball,) = out.glob("l2lb-layer2-*.tar.gz")
    with tarfile.open(tarball) as tar:
        return {m.name + ("/" if m.isdir() else "") for m in tar.getmembers()}


def test_license_file_matches_galaxy(members):
    assert GALAXY["license"] == ["GPL-3.0-or-later"]
    assert "LICENSE" in members
    text = (REPO / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text


def test_no_caches_state_or_venvs(members):
    leaked = sorted(m for m in members if m.startswith(TOP_LEVEL) or any(f in m for f in ANYWHERE))
    assert not leaked, leaked[:20]
    assert not [m for m in members if m.endswith((".pyc", ".tar", ".tar.gz"))]


def test_everything_the_image_build_reads_is_shipped(members):
    script = (REPO / "scripts" / "build-image.sh").read_text()
    named = re.findall(r"\$repo/([A-Za-z0-9_./-]+[A-Za-z0-9_])", script)
    inputs = {path for path in named if not path.startswith(NOT_INPUTS)}
    assert "scripts/build-image.sh" in inputs and "constraints.txt" in inputs
    for path in sorted(inputs):
        if (REPO / path).is_dir():
            tracked = subprocess.run(["git", "ls-files", path], cwd=REPO, capture_output=True, text=True,
                                     check=True).stdout.split()
            missing = [f for f in tracked if f not in members]
            assert not missing, f"{path}: {missing}"
        else:
            assert path in members, f"the image build reads {path}, but the tarball lacks it"
    assert "files/agent/Containerfile" in members
