"""One mutating lab command at a time per checkout: tests and people share a single lab.

`lab up|down|node-*|api-*` hold an exclusive flock while they run. A caller that already holds
it (a test that takes the lab down and checks it before anyone restarts it) sets
L2LB_LAB_LOCK_HELD=1 in the environment of the `lab` commands it runs meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import topology as topo

HELD_ENV = "L2LB_LAB_LOCK_HELD"


def lock_path() -> Path:
    key = hashlib.sha256(str(topo.repo_root()).encode()).hexdigest()[:12]
    base = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    return base / f"l2lb-lab-{key}.lock"


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the lab's lock (waiting, with a note on stderr, if someone else has it)."""
    if os.environ.get(HELD_ENV) == "1":
        yield
        return
    with open(lock_path(), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f">> lab: waiting for another lab command to finish ({fh.name})", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
