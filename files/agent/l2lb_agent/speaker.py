"""The speaker: which LoadBalancer IPs this node announces, and announcing them (component ring).

Flow: watches (Services, EndpointSlices, Nodes, heartbeat Leases; ``speaker_watch``) mark the
state dirty -> the sync loop (one thread, every ``TICK`` or on change) computes
``ownership.choose`` over eligible live speakers -> ``ownership.step`` (hand-over delay) ->
``announcer.Announcer.update`` -> ARP/NDP on the LAN. ``speaker_lease.Heartbeat`` renews this
node's Lease and moves the answering fence forward (``Announcer.set_fence``).

This node counts itself live only while its fence holds and, after any silent spell (and at
start), once it has seen its own renewal come back through the Lease watch, so it never acts
on views older than its Lease. If renewals succeed but stop coming back through the watch for
lease_duration, the watches are rebuilt (a hung watch connection).

Guarantees, with ``timing.LeaseTimings``:
* never two owners: a speaker answers only before its fence (last renewal start +
  lease_duration - fence_margin); peers call it dead only after lease_duration without seeing
  its Lease change (``ownership.Liveness``), so it is silent first;
* SIGTERM: stop answering, stop renewing, delete the Lease (peers take over at once), exit;
* API writes in steady state: one Lease renewal per renew_interval, whatever the Service count
  (``nodeAssigned`` Events only when this node gains an IP).
Fails closed with a logged reason: not synced, Lease not renewed, node not eligible.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import Any

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import announcer, kube, kubeconfig, ownership, speaker_lease, speaker_watch, timing

log = logging.getLogger(__name__)

TICK = 0.05  # seconds between liveness checks of the sync loop


class Speaker:
    """Wires watches, heartbeat, ownership and announcer. start() / run_until(stop) / shutdown()."""

    def __init__(self, client: kube.KubeClient, lease_client: kube.KubeClient, *, namespace: str, node: str,
                 identity: str, lb_class: str, t: timing.LeaseTimings, interfaces: Iterable[str]) -> None:
        self.client, self.ns, self.node, self.lb_class, self.t = client, namespace, node, lb_class, t
        self.announcer = announcer.Announcer(interfaces)
        self.heartbeat = speaker_lease.Heartbeat(lease_client, namespace, node, identity, t, self._renewed)
        self.liveness = ownership.Liveness(t.lease_duration, t.fence_after)
        self.plan = ownership.Plan()
        self.choices: Mapping[str, ownership.Choice] = {}
        self._wake = threading.Event()
        self._dirty = True
        self._last_live: frozenset[str] | None = None
        self._last_desired: dict[str, str | None] = {}
        self._live_lock = threading.Lock()  # liveness is written by the Lease watch, read by sync
        self._events: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=10000)  # (service key, ip)
        self.watches = speaker_watch.Watches(client, namespace, self._changed, self._lease_changed)
        self._watch_epoch = 0.0  # monotonic time the current watches were (re)started

    # -- watch handlers ------------------------------------------------------------------

    def _changed(self, _kind: str, _new: Any, _old: Any) -> None:
        self._dirty = True
        self._wake.set()

    def _lease_changed(self, kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        now = time.monotonic()
        node = speaker_lease.lease_node(new or old or {})
        if node is None:
            return
        with self._live_lock:
            if kind == "DELETED":
                self.liveness.deleted(node)
                log.info("speaker %s released its Lease", node)
            else:
                self.liveness.changed(node, now)
                seq = speaker_lease.lease_seq(new or {})
                started = self.heartbeat.started(seq) if node == self.node and seq is not None else None
                if started is not None:
                    self.liveness.own_renewal_seen(started)
        self._wake.set()

    def _renewed(self, fence: float, revived: bool) -> None:
        self.announcer.set_fence(fence)
        if revived:
            self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, sync_timeout: float = 60.0, stop: threading.Event | None = None) -> bool:
        """Open sockets, start watches, wait until synced, then start the heartbeat."""
        self.announcer.start()
        self._watch_epoch = time.monotonic()
        self.watches.start()
        missing = self.watches.wait_synced(sync_timeout, lambda: stop is not None and stop.is_set())
        if missing is not None:
            log.error("watch %s not synced; not announcing", missing)
            return False
        self._sync(time.monotonic())  # a view without ourselves first: gains from live peers wait
        self.heartbeat.start()
        threading.Thread(target=self._event_loop, name="speaker-events", daemon=True).start()
        return True

    def run_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            try:
                self._watchdog(time.monotonic())
                self._sync(time.monotonic())
            except Exception:
                log.exception("sync failed; silencing until the next one succeeds")
                self.announcer.update(())

    def shutdown(self) -> None:
        """Graceful hand-over: silent first, then the Lease goes, then the rest."""
        self.announcer.silence()
        self.heartbeat.stop()
        self.heartbeat.release()
        self.announcer.stop()
        self.watches.stop()

    def _watchdog(self, now: float) -> None:
        """Restart the watches when our renewals succeed but stop coming back through the Lease watch."""
        seen = max(self.liveness.own_seen_start, self._watch_epoch)
        unseen = next((s for s in list(self.heartbeat.ok_starts) if s > seen), None)
        if unseen is not None and now - unseen > self.t.lease_duration:
            log.warning("own Lease renewal of %.1fs ago not seen in the watch: restarting the watches",
                        now - unseen)
            self._watch_epoch = now
            self.watches.restart()

    # -- the sync step -----------------------------------------------------------------------

    def live_nodes(self, now: float) -> frozenset[str]:
        with self._live_lock:
            live = set(self.liveness.live(now))
            # Our own liveness is our fence, and, after a silent spell (or at start), having seen
            # our renewal come back through the Lease watch: the views we decide on are fresh.
            fresh = self.liveness.own_seen_start >= self.heartbeat.live_since
        live.discard(self.node)
        if self.heartbeat.valid(now) and fresh:
            live.add(self.node)
        return frozenset(live)

    def _desired(self, live: frozenset[str]) -> dict[str, str | None]:
        lb = self.lb_class
        views = [v for v in (ownership.service_view(s, lb) for s in self.watches.items("services")) if v]
        slices: dict[str, list[dict[str, Any]]] = {}  # service key -> its EndpointSlices
        for sl in self.watches.items("slices"):
            key = ownership.slice_service_key(sl)
            if key:
                slices.setdefault(key, []).append(sl)
        endpoints = {v.key: ownership.endpoints_of(slices.get(v.key, ())) for v in views}
        eligible = {n["metadata"]["name"] for n in self.watches.items("nodes")
                    if ownership.node_eligible(n)[0]}
        self.choices = ownership.choose(views, endpoints, live & eligible)
        return {ip: c.owner for ip, c in self.choices.items()}

    def _sync(self, now: float) -> None:
        live = self.live_nodes(now)
        if self._dirty or live != self._last_live:
            self._dirty = False
            if live != self._last_live:
                log.info("live speakers: %s", ", ".join(sorted(live)) or "none")
            self._last_live = live
            self._last_desired = self._desired(live)
        elif (self.plan.next_due() or float("inf")) > now:
            return
        self.plan = ownership.step(self.plan, self._last_desired, self.node, live, now, self.t.handover_delay)
        gained, lost = self.announcer.update(self.plan.announce)
        for ip in sorted(lost):
            log.info("stopped announcing %s (owner now: %s)", ip, self._last_desired.get(ip) or "nobody")
        for ip in sorted(gained):
            log.info("announcing %s from %s", ip, self.node)
            for svc in self.choices[ip].services if ip in self.choices else ():
                self._queue_event(svc, ip)

    # -- events ------------------------------------------------------------------------------

    def _queue_event(self, svc: str, ip: str) -> None:
        try:
            self._events.put_nowait((svc, ip))
        except queue.Full:
            log.warning("event queue full; nodeAssigned for %s not recorded", svc)

    def _event_loop(self) -> None:
        while True:
            svc_key, ip = self._events.get()
            obj = self.watches.get("services", svc_key)
            if obj is None:
                continue
            obj = {"apiVersion": "v1", "kind": "Service", **obj}
            try:
                self.client.create_event(obj["metadata"]["namespace"], obj, "Normal", "nodeAssigned",
                                         f"announcing {ip} from node {self.node}", "l2lb-speaker")
            except kube.ApiError as exc:
                log.warning("nodeAssigned Event for %s not written: %s", svc_key, exc)


class _Collector:
    """Speaker metrics read from plain counters at scrape time (the hot path touches no lock)."""

    def __init__(self, speaker: Speaker) -> None:
        self.s = speaker

    def collect(self) -> Iterable[Any]:
        s, stats = self.s, self.s.announcer.stats
        yield GaugeMetricFamily("l2lb_speaker_owned_ips", "IPs this node announces now",
                                value=len(s.announcer.owned))
        answered = CounterMetricFamily("l2lb_speaker_requests_answered", "ARP/NDP requests answered",
                                       labels=["kind"])
        for kind in ("arp", "ns", "dad"):
            answered.add_metric([kind], stats.answered[kind])
        yield answered
        dropped = CounterMetricFamily("l2lb_speaker_frames_dropped", "Frames not answered, by reason",
                                      labels=["reason"])
        for verdict, n in sorted(stats.dropped.items(), key=lambda kv: kv[0].name):
            dropped.add_metric([verdict.name.lower()], n)
        yield dropped
        yield CounterMetricFamily("l2lb_speaker_garps_sent", "Gratuitous ARP / unsolicited NA sent",
                                  value=stats.announcements)
        yield CounterMetricFamily("l2lb_speaker_lease_renew_failures", "Heartbeat Lease renewals that failed",
                                  value=s.heartbeat.failures)
        yield CounterMetricFamily("l2lb_speaker_lease_writes", "Heartbeat Lease writes sent",
                                  value=s.heartbeat.writes)
        yield GaugeMetricFamily("l2lb_speaker_fenced",
                                "1 while the Lease is not renewed and the speaker is silent",
                                value=0 if s.heartbeat.valid(time.monotonic()) else 1)


def run(args: Namespace) -> int:
    """Entry point from cli: run until args.stop is set, then hand over."""
    t: timing.LeaseTimings = getattr(args, "timings", None) or timing.LeaseTimings()
    try:
        interfaces = announcer.choose_interfaces(args.interfaces or ())
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if not interfaces:
        log.error("interfaces: no suitable LAN interface found; set --interfaces")
        return 2
    try:
        client = kube.KubeClient.from_config(args.kubeconfig, getattr(args, "context", None))
        lease_client = kube.KubeClient.from_config(  # a renewal answered after the fence is useless
            args.kubeconfig, getattr(args, "context", None),
            connect_timeout=t.request_timeout, read_timeout=t.request_timeout)
    except kubeconfig.KubeConfigError as exc:
        log.error("%s", exc)
        return 2
    sp = Speaker(client, lease_client, namespace=args.namespace, node=args.node_name,
                 identity=getattr(args, "pod_name", None) or args.node_name, lb_class=args.loadbalancer_class,
                 t=t, interfaces=interfaces)
    log.info("speaker %s: lease %.2fs, renew %.2fs, fence after %.2fs, interfaces %s", args.node_name,
             t.lease_duration, t.renew_interval, t.fence_after, ", ".join(interfaces))
    prometheus_client.REGISTRY.register(_Collector(sp))
    args.health = lambda: sp.heartbeat.valid(time.monotonic())
    try:
        if sp.start(stop=args.stop):
            sp.run_until(args.stop)
    except PermissionError as exc:
        log.error("interfaces: raw sockets need CAP_NET_RAW and host networking: %s", exc)
        return 2
    finally:
        sp.shutdown()
    log.info("speaker %s stopped", args.node_name)
    return 0
