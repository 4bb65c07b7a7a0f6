"""The speaker's watches: desired state, pools, peers' registrations, keys (component ring).

Place in the flow: API server -> ``kube.Informer`` x 6 (kept here) -> handlers in ``speaker``.
Services, EndpointSlices and Nodes are the desired state; the ConfigMap ``config`` (by name) holds
the pools and so where each pool may be announced; the speakers' registration Leases say which
speakers exist (for "am I cut off?") and their interfaces, and the ``l2lb-memberlist`` Secret holds
the heartbeat keys (watched by name, so RBAC can grant that one Secret only).

Each informer relists after any failure (``kube.Informer.run``), so no view goes stale
silently; liveness does not depend on these watches at all (see ``membership``), so a slow or
absent API server delays changes to the desired state and nothing else.
Readers use ``items(kind)`` / ``get(kind, key)``. The caches hold projections (``ownership.project_*``):
only the speaker's LoadBalancer Services, each with the few fields it reads, EndpointSlices as their
distinct (node, ready) pairs, Nodes as labels and two conditions; a change that leaves a projection
equal (a Node's heartbeat timestamps) reaches no handler.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

from . import kube, ownership

log = logging.getLogger(__name__)

SECRETS = kube.Resource("v1", "secrets", "Secret")
CONFIG_MAP = "config"  # the pools (the controller's ConfigMap): where each pool may be announced
REGISTRATION_SELECTOR = "l2lb.io/role=speaker-heartbeat"


@dataclasses.dataclass(frozen=True)
class Handlers:
    """One handler per watched kind (called on that informer's thread)."""

    services: kube.Handler
    slices: kube.Handler
    nodes: kube.Handler
    registrations: kube.Handler
    keys: kube.Handler
    config: kube.Handler


def _config_only(cm: dict[str, Any]) -> dict[str, Any]:
    meta = cm.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
            "data": {"config": (cm.get("data") or {}).get("config")}}


class Watches:
    """The six informers. start() / wait_synced() / stop()."""

    def __init__(self, client: kube.KubeClient, namespace: str, secret: str, handlers: Handlers, *,
                 lb_class: str, claim_unclassed: bool) -> None:
        c, h = client, handlers
        ours = functools.partial(ownership.project_service, lb_class=lb_class,
                                 claim_unclassed=claim_unclassed)
        self.informers: dict[str, kube.Informer] = {  # kind -> informer
            "services": kube.Informer(c, kube.SERVICES, h.services, name="speaker-services", project=ours),
            "slices": kube.Informer(c, kube.ENDPOINTSLICES, h.slices, name="speaker-slices",
                                    project=ownership.project_slice),
            "nodes": kube.Informer(c, kube.NODES, h.nodes, name="speaker-nodes",
                                   project=ownership.project_node),
            "registrations": kube.Informer(c, kube.LEASES, h.registrations, namespace=namespace,
                                           label_selector=REGISTRATION_SELECTOR, name="speaker-registry"),
            "config": kube.Informer(c, kube.CONFIGMAPS, h.config, namespace=namespace,
                                    field_selector=f"metadata.name={CONFIG_MAP}", name="speaker-config",
                                    project=_config_only),
            "keys": kube.Informer(c, SECRETS, h.keys, namespace=namespace,
                                  field_selector=f"metadata.name={secret}", name="speaker-keys"),
        }

    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()

    def wait_synced(self, timeout: float, abort: Callable[[], bool] = lambda: False) -> str | None:
        """None once every informer has listed, else the name of one that has not."""
        waited = 0.0
        for name, inf in self.informers.items():
            while not inf.synced.wait(0.2):
                waited += 0.2
                if abort() or waited > timeout:
                    return name
        return None

    def failing_since(self) -> float | None:
        """When the oldest current failure streak of a desired-state watch began (None: all fine).

        A watch that keeps failing (relist backing off) leaves a stale view even while single GETs
        get through, so the speaker treats it like a cut from the API server."""
        streaks = [inf.failing_since for kind, inf in self.informers.items()
                   if kind in ("services", "slices", "nodes") and inf.failing_since is not None]
        return min(streaks, default=None)

    def stop(self) -> None:
        for inf in self.informers.values():
            inf.stop(timeout=0)

    def items(self, kind: str) -> list[dict[str, Any]]:
        return self.informers[kind].items()

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.informers[kind].get(key)
