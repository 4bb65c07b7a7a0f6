"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test creates each sanity venv without pip, then runs a get-pip.py it downloads from
ci-files.testing.ansible.com, which this machine cannot reach (only package registries are).
scripts/lint.sh copies this file to the cache path ansible-test looks at first. It does what
get-pip does with the tools at hand: ensurepip (pip bundled with Python), then pip itself installs
the pinned pip version ansible-test asked for, from PyPI.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip flags pip install does not know.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
