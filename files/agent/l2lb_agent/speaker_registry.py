"""The speaker's registration Lease and its view of the API server (component ring).

Place in the flow: ``Registry`` thread -> Lease ``l2lb-speaker-<node>`` in the l2lb namespace
(labels ``l2lb.io/role: speaker-heartbeat``, ``l2lb.io/node``) -> peers' registration watches
(``speaker_watch``) and ``l2lb_info``.

What the Lease is for now: not liveness (that is on the LAN, ``membership``), but
* registration: which speakers exist, so a speaker that hears none of them knows it is cut off;
* who announces what: annotation ``l2lb.io/announcing`` lists the IPs this node answers for,
  written at most once per ``MIN_WRITE_GAP`` and only when the set changed (exact and durable,
  unlike Events);
* where it can answer: annotation ``l2lb.io/interfaces`` ("eth0=192.168.1.0/24,fd00::/64;eth1=...")
  names its announcing interfaces and their subnets (every speaker's ``placement_map`` reads it),
  ``l2lb.io/subnets`` the subnets alone (the controller's ``NoMatchingSubnet`` check);
* which heartbeat keys it has loaded: annotation ``l2lb.io/key-ids`` (``keyring.key_id`` of each,
  "" for none), so a key rotation writes its final keyring only once every speaker holds the
  bridge (the ``l2lb_memberlist`` module checks it);
* the API probe: one GET of the Lease every ``api_probe_interval`` tells whether this node's view
  of the desired state is fresh (``last_ok``); a speaker with a stale view yields to fresh peers.
Writes: one create at start (and again if someone deletes the Lease), one update per change of
the announced set, of the interfaces' subnets or of the loaded keys, one delete on shutdown.
Reads: ~2.5 GETs/s.
None grow with the Service count.
Not guaranteed: the annotation lags the truth by up to MIN_WRITE_GAP + one request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import ifaddrs, keyring, kube, timing

log = logging.getLogger(__name__)

ROLE_LABEL = "l2lb.io/role"
ROLE = "speaker-heartbeat"
NODE_LABEL = "l2lb.io/node"
ANNOUNCING = "l2lb.io/announcing"
INTERFACES = "l2lb.io/interfaces"
SUBNETS = "l2lb.io/subnets"
KEY_IDS = keyring.KEY_IDS_ANNOTATION
PUBLISHED = (INTERFACES, SUBNETS, KEY_IDS)  # the annotations besides ANNOUNCING this registry owns
MIN_WRITE_GAP = 1.0  # seconds between annotation writes of one node


def lease_name(node: str) -> str:
    return f"l2lb-speaker-{node}"


def lease_node(lease: dict[str, Any]) -> str | None:
    """The node a registration Lease belongs to."""
    return ((lease.get("metadata") or {}).get("labels") or {}).get(NODE_LABEL)


def announced(lease: dict[str, Any]) -> list[str]:
    """The IPs a registration says its node announces."""
    raw = ((lease.get("metadata") or {}).get("annotations") or {}).get(ANNOUNCING) or ""
    return [ip for ip in raw.split(",") if ip]


def published_interfaces(lease: dict[str, Any]) -> dict[str, tuple[ifaddrs.IPNetwork, ...]] | None:
    """The interfaces and subnets a registration publishes; None when it publishes none."""
    raw = ((lease.get("metadata") or {}).get("annotations") or {}).get(INTERFACES)
    return ifaddrs.parse_interfaces(raw) if raw else None


def interface_annotations(found: Mapping[str, tuple[ifaddrs.IPNetwork, ...]]) -> dict[str, str]:
    """The two annotations that publish this node's announcing interfaces ({} for none)."""
    if not found:
        return {}
    subnets = sorted({str(net) for nets in found.values() for net in nets})
    return {INTERFACES: ifaddrs.format_interfaces(dict(found)), SUBNETS: ",".join(subnets)}


def key_annotations(keys: tuple[bytes, ...]) -> dict[str, str]:
    """The annotation that publishes which heartbeat keys this node has loaded (by id)."""
    return {KEY_IDS: keyring.format_key_ids([keyring.key_id(k) for k in keys])}


def lease_body(node: str, namespace: str, identity: str, ips: frozenset[str], published: Mapping[str, str],
               base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registration to write (base: the Lease last read, to keep its resourceVersion);
    published: the ``PUBLISHED`` annotations to hold (one left out is removed)."""
    body: dict[str, Any] = dict(base or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease"})
    meta = dict(body.get("metadata") or {})
    meta.update(name=lease_name(node), namespace=namespace)
    meta["labels"] = {**(meta.get("labels") or {}), ROLE_LABEL: ROLE, NODE_LABEL: node}
    kept = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in PUBLISHED}
    meta["annotations"] = {**kept, ANNOUNCING: ",".join(sorted(ips)), **published}
    body["metadata"] = meta
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body["spec"] = {**(body.get("spec") or {}), "holderIdentity": identity, "renewTime": now}
    body["spec"].setdefault("acquireTime", now)
    return body


class Registry:
    """Registration, announced IPs and API freshness, on one thread. start() / release() / stop()."""

    def __init__(self, client: kube.KubeClient, namespace: str, node: str, identity: str,
                 t: timing.LanTimings) -> None:
        self._client, self._ns, self._node, self._identity, self._t = client, namespace, node, identity, t
        self.last_ok = float("-inf")  # monotonic time of the last answered probe
        self.writes = 0
        self.probes = 0
        self.failures = 0
        self._want: frozenset[str] = frozenset()  # IPs to publish
        self._written: frozenset[str] | None = None  # IPs the Lease says (None: unknown)
        self._want_notes: dict[str, str] = key_annotations(())  # PUBLISHED annotations to hold
        self._written_notes: dict[str, str] | None = None  # what the Lease holds (None: unknown)
        self._notes_lock = threading.Lock()  # two threads publish (sync: interfaces, watch: keys)
        self._last: dict[str, Any] | None = None  # the Lease as last read or written
        self._last_write = float("-inf")
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, ips: frozenset[str]) -> None:
        """The IPs this node announces now (written soon, rate limited)."""
        self._want = ips
        self._kick.set()

    def set_interfaces(self, found: Mapping[str, tuple[ifaddrs.IPNetwork, ...]]) -> None:
        """This node's announcing interfaces and their subnets (``ifaddrs.read``)."""
        self._publish_notes((INTERFACES, SUBNETS), interface_annotations(found))

    def set_keys(self, keys: tuple[bytes, ...]) -> None:
        """The heartbeat keys this node has loaded (published by id, never the keys)."""
        self._publish_notes((KEY_IDS,), key_annotations(keys))

    def _publish_notes(self, names: tuple[str, ...], notes: dict[str, str]) -> None:
        with self._notes_lock:
            want = {k: v for k, v in self._want_notes.items() if k not in names} | notes
            if want == self._want_notes:
                return
            self._want_notes = want
        self._kick.set()

    def lost(self) -> None:
        """Someone deleted our Lease: write it again at once."""
        self._last, self._written = None, None
        self._kick.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="speaker-registry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(2 * self._t.api_stale_after)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sync_once(began)
            except kube.ApiError as exc:
                self.failures += 1
                log.debug("registration %s: %s", lease_name(self._node), exc)
            self._kick.wait(max(0.0, self._t.api_probe_interval - (time.monotonic() - began)))
            self._kick.clear()

    def sync_once(self, began: float) -> None:
        """One probe (a GET), plus a write when the Lease is missing or its IPs are out of date."""
        name = lease_name(self._node)
        self.probes += 1
        try:
            self._last = self._client.get(kube.LEASES, name, self._ns)
            self._written = frozenset(announced(self._last))
            annotations = (self._last.get("metadata") or {}).get("annotations") or {}
            self._written_notes = {k: v for k, v in annotations.items() if k in PUBLISHED}
        except kube.NotFound:
            self._last, self._written, self._written_notes = None, None, None
        self.last_ok = max(self.last_ok, began)  # the API answered a request sent at `began`
        want, notes = self._want, self._want_notes
        current = self._last is not None and self._written == want and self._written_notes == notes
        if current or began - self._last_write < MIN_WRITE_GAP:
            return
        body = lease_body(self._node, self._ns, self._identity, want, notes, self._last)
        self.writes += 1
        self._last_write = began
        if self._last is None:
            self._last = self._client.create(kube.LEASES, body, self._ns)
        else:
            self._last = self._client.replace(kube.LEASES, name, body, self._ns)
        self._written, self._written_notes = want, notes

    def release(self) -> None:
        """Delete the registration (shutdown): the node is no longer a speaker."""
        try:
            self._client.delete(kube.LEASES, lease_name(self._node), self._ns)
        except kube.NotFound:
            pass
        except kube.ApiError as exc:
            log.warning("registration %s not deleted (%s)", lease_name(self._node), exc)
