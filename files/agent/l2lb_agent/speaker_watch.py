"""The speaker's watches: Services, EndpointSlices, Nodes and heartbeat Leases (component ring).

Place in the flow: API server -> ``kube.Informer`` x 4 (kept here) -> handlers in ``speaker``.

Why not just start four informers: the speaker's safety depends on fresh views, so
* each informer relists after any failure (``kube.Informer.run``), so no view goes stale silently;
* ``restart()`` builds a fresh set, waits until it is synced, then swaps it in and stops the old
  one (the old views keep serving meanwhile, never an empty one). The speaker calls it when its
  own Lease renewals succeed but stop coming back through the Lease watch: the watch
  connection is hung even though requests get through.
Readers use ``items(kind)`` / ``get(kind, key)``; the dict of informers is swapped by reference.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from . import kube, speaker_lease

log = logging.getLogger(__name__)

KINDS = ("services", "slices", "nodes", "leases")


class Watches:
    """The four informers, supervised and restartable. start() / restart() / stop()."""

    def __init__(self, client: kube.KubeClient, namespace: str, on_change: kube.Handler,
                 on_lease: kube.Handler) -> None:
        self._client, self._ns = client, namespace
        self._on_change, self._on_lease = on_change, on_lease
        self._stopping = threading.Event()
        self._restarting = threading.Lock()
        self.informers: dict[str, kube.Informer] = {}  # kind -> informer

    def _build(self) -> dict[str, kube.Informer]:
        selector = f"{speaker_lease.ROLE_LABEL}={speaker_lease.ROLE}"
        c, h = self._client, self._on_change
        return {
            "services": kube.Informer(c, kube.SERVICES, h, name="speaker-services"),
            "slices": kube.Informer(c, kube.ENDPOINTSLICES, h, name="speaker-slices"),
            "nodes": kube.Informer(c, kube.NODES, h, name="speaker-nodes"),
            "leases": kube.Informer(c, kube.LEASES, self._on_lease, namespace=self._ns,
                                    label_selector=selector, name="speaker-leases"),
        }

    def _run(self, informers: dict[str, kube.Informer]) -> None:
        for inf in informers.values():
            inf.start()  # its loop relists after any failure, so a watch never dies with a stale view

    def start(self) -> None:
        self.informers = self._build()
        self._run(self.informers)

    def wait_synced(self, timeout: float, abort: Callable[[], bool] = lambda: False) -> str | None:
        """None once every informer has listed, else the name of one that has not."""
        return _wait_synced(self.informers, timeout, abort)

    def restart(self, timeout: float = 60.0) -> None:
        """Fresh informers in the background; swapped in once synced (no-op if one is running)."""
        if not self._restarting.acquire(blocking=False):
            return
        threading.Thread(target=self._restart, args=(timeout,), name="speaker-rewatch", daemon=True).start()

    def _restart(self, timeout: float) -> None:
        try:
            fresh = self._build()
            self._run(fresh)
            missing = _wait_synced(fresh, timeout, self._stopping.is_set)
            if missing is not None:
                log.warning("fresh watch %s not synced; keeping the old watches", missing)
                _stop(fresh)
                return
            old, self.informers = self.informers, fresh
            _stop(old)
            log.info("watches restarted and synced")
        finally:
            self._restarting.release()

    def stop(self) -> None:
        self._stopping.set()
        _stop(self.informers)

    def items(self, kind: str) -> list[dict[str, Any]]:
        return self.informers[kind].items()

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.informers[kind].get(key)


def _wait_synced(informers: dict[str, kube.Informer], timeout: float,
                 abort: Callable[[], bool]) -> str | None:
    waited = 0.0
    for name, inf in informers.items():
        while not inf.synced.wait(0.2):
            waited += 0.2
            if abort() or waited > timeout:
                return name
    return None


def _stop(informers: dict[str, kube.Informer]) -> None:
    for inf in informers.values():
        inf.stop(timeout=0)
