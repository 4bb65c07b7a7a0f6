"""The controller: gives LoadBalancer Services addresses from the pools and keeps them.

Component ring. Flow:
  informers (ConfigMap `config` in l2lb's namespace; Services in all namespaces)
    -> one work queue (deduplicated keys) -> one worker thread, the only one touching the allocator
    -> `services.request_for` -> `allocator.assign` -> writers (status writes on `--workers`
       threads, sharded by Service key so one Service's writes stay in order, all of them together
       held to `--api-qps`/`--api-burst`; Events on a thread of their own, `writers.EventWriter`).
One allocation costs one API write on the hot path: its status. Its IPAllocated Event goes out
once no status write is waiting (at most 30 s later) while the Event budget lasts (events.Budget:
burst 25, then 5/s from a backlog of 1,000),
so a burst of 10,000 allocations costs 10,000 status writes and a trickle of Events; Events beyond
the backlog are counted (`l2lb_controller_events_dropped_total{reason}`) and summed up in one
Warning Event `EventsDropped` on the ConfigMap once the backlog drains; an identical Event on the
same object within 10 minutes is counted as a repeat (`..._events_aggregated_total`), not written.
The Services informer keeps a projection (`_project`): the fields the allocator and the Events
read, and nothing of Services that are not ours and hold no address.
Only the Lease leader (`leader.LeaderElector`) computes and writes; every write re-checks
leadership. On becoming leader the worker LISTs the Services from the API server (not the informer
cache, which may not hold the last leader's final writes yet) and builds a fresh allocator from
their status (Services that hold addresses first, oldest first) before anything new is assigned,
so a valid address is never moved. With no ConfigMap nothing is assigned and nothing is removed.
An invalid ConfigMap leaves the last good config in force (log, Warning Event `InvalidConfig`,
metric `l2lb_config_stale 1`); a valid one with warnings (link-local pools, a pool holding a
node's InternalIP) gets a Warning Event `ConfigWarning` per warning. Failed Services wait in
`_pending` and are retried when addresses free up or the config changes. A failed status write
puts its Service back in the queue after a per-key exponential backoff (writers.KeyQueue, 1 s
doubling to 5 min, jittered): one Warning Event `StatusWriteFailed` per failure streak, the
counter `l2lb_status_write_failures_total` and the gauge `l2lb_services_write_backoff`;
IPAllocated is sent once per address change, not once per attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import prometheus_client

from . import allocator, announce_status, config, events, heap, kube, leader, metrics, placement, services
from .writers import EventWriter, KeyQueue, Throttle, Writers

log = logging.getLogger(__name__)

CONFIGMAP = "config"
LEASE = "l2lb-controller"
# Status writes per second (and burst) for all writer threads together. High next to client-go's
# 5/10, because the goal is to keep up with Services created as fast as the API server takes them
# (~230/s on the 2-core lab): at 200/s 10,000 Services are written in ~50 s, and the burst covers
# a batch of 400 at once. The API server's own priority and fairness still applies.
API_QPS, API_BURST = 200.0, 400
COMPONENT = "l2lb-controller"
# Queue tokens (never Service keys). LEADERSHIP means "leadership may have changed": its handler
# reads the elector's state, so coalesced or reordered tokens still converge.
CONFIG, LEADERSHIP = "\0config", "\0leadership"
PLACEMENT = "\0placement"  # Node labels or speakers' subnets changed: check the holders again


class Controller:
    """Explicit start()/stop(); the constructor starts nothing."""

    def __init__(self, client: kube.KubeClient, *, namespace: str, lb_class: str, identity: str,
                 timings: Any, workers: int = 16, claim_unclassed: bool = True, registry: Any = None,
                 api_qps: float = API_QPS, api_burst: int = API_BURST) -> None:
        self.client, self.namespace, self.lb_class = client, namespace, lb_class
        self.claim_unclassed = claim_unclassed
        self.metrics = metrics.ControllerMetrics(registry) if registry else metrics.ControllerMetrics()
        self.metrics.api_requests.set_function(lambda: client.request_count)
        reg = registry or prometheus_client.REGISTRY
        self.write_failures = prometheus_client.Counter(
            "l2lb_status_write_failures", "Service status writes that failed (each is retried with backoff)",
            registry=reg)
        self.write_backoff = prometheus_client.Gauge(
            "l2lb_services_write_backoff", "Services whose status write failed and waits for a retry",
            registry=reg)
        self.queue = KeyQueue()
        self.write_backoff.set_function(self.queue.failing)  # read at scrape: never stale
        self.services = kube.Informer(client, kube.SERVICES, self._on_service, name="services",
                                      project=self._project)
        self.configmaps = kube.Informer(client, kube.CONFIGMAPS, lambda *_args: self.queue.put(CONFIG),
                                        namespace=namespace, field_selector=f"metadata.name={CONFIGMAP}",
                                        name="configmap")
        # who may use a pool (Namespace labels) and where it can be announced (Node labels, the
        # speakers' subnets); each cache keeps labels only, and calls back only when they change
        self.namespaces = kube.Informer(client, kube.NAMESPACES, self._on_namespace, name="namespaces",
                                        project=placement.project_labels)
        self.nodes = kube.Informer(client, kube.NODES, self._on_placement, name="nodes",
                                   project=placement.project_labels)
        self.speakers = kube.Informer(client, kube.LEASES, self._on_placement,
                                      namespace=namespace, label_selector=placement.SPEAKER_ROLE,
                                      name="speakers", project=placement.project_speaker)
        self.without_subnet = prometheus_client.Gauge(
            "l2lb_pool_without_subnet", "1 when a pool without an interfaces list meets no subnet of the "
            "speakers that may announce it", ["pool"], registry=reg)
        self._placement_warned: dict[str, set[str]] = {}  # key -> Event reasons sent (once per Service)
        self._placement_view: placement.View | None = None  # built on demand, dropped on a change
        self.elector = leader.LeaderElector(client, namespace, LEASE, identity, timings,
                                            on_start=lambda: self.queue.put(LEADERSHIP),
                                            on_stop=self._on_lost)
        # who announces each IP (IPAnnouncements): the leader deletes those of released IPs
        self.announcements = announce_status.Janitor(client, self.elector.is_leader, lambda: [
            ip for s in self.services.items() for ip in services.status_ips(s)])
        self.throttle = Throttle(api_qps, api_burst)
        self.writers = Writers(workers, self.elector.is_leader, self._write_failed, self._write_ok,
                               throttle=self.throttle)
        self.event_writer = EventWriter(self._send_event, self._send_summary, self.elector.is_leader,
                                        status_busy=self.writers.busy)
        self.metrics.throttled.set_function(lambda: self.throttle.waited)
        self.metrics.events_queued.set_function(self.event_writer.pending)
        self.config: config.Config | None = None  # last good config
        self.alloc: allocator.Allocator | None = None  # only while leading with a config
        self._raw_seen: object = object()  # ConfigMap text last processed
        self._config_error: str | None = None  # why the current ConfigMap is refused
        self._config_warnings: list[str] = []  # what the config in force deserves a look for
        self._pending: set[str] = set()  # keys that failed; retried when addresses free
        self._failed: dict[str, str] = {}  # key -> last failure message (one Event per new message)
        self._written: dict[str, list[dict[str, str]]] = {}  # key -> ingress last written
        self._evented: dict[str, list[dict[str, str]]] = {}  # key -> ingress IPAllocated was sent for
        self._warned: set[str] = set()  # keys warned about addresses outside every pool
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heap = heap.Settler()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.services.start()
        self.configmaps.start()
        for informer in (self.namespaces, self.nodes, self.speakers):
            informer.start()
        self.writers.start()
        self.announcements.start()
        self.event_writer.start()
        self._thread = threading.Thread(target=self._run, name="controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.elector.stop(release=True)
        self.writers.stop()
        self.announcements.stop()
        self.event_writer.stop()
        self.services.stop()
        self.configmaps.stop()
        for informer in (self.namespaces, self.nodes, self.speakers):
            informer.stop()

    def healthy(self) -> bool:
        # Namespace labels decide who may use a pool: no allocation before they are known
        return (self.services.synced.is_set() and self.configmaps.synced.is_set()
                and self.namespaces.synced.is_set())

    def _run(self) -> None:
        while not self._stop.is_set() and not self.healthy():
            self._stop.wait(0.1)
        if self._stop.is_set():
            return
        log.info("caches synced: %d Services", len(self.services.cache))
        self.heap.settle(time.monotonic())  # the caches just loaded: no full collection walks them again
        self._load_config()
        self.elector.start()
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.5)
            if item is None:
                continue
            try:
                self._handle(item)
            except Exception:
                log.exception("controller: failed to handle %s", item)
            if self.queue.empty():
                self._update_metrics()
                self.heap.due(time.monotonic())  # idle now: a settle delays no allocation

    def _handle(self, item: str) -> None:
        if item == CONFIG:
            self._load_config()
            self.queue.put(PLACEMENT)  # the pools' rules may have changed
        elif item == LEADERSHIP:
            self._resync()
        elif item == PLACEMENT:
            self._check_placement_all()
        elif self.alloc is not None:
            self._sync(item)

    # -- informer callbacks (informer threads) ------------------------------------------------

    def _on_service(self, _kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        self.queue.put(kube.object_key(new or old or {}))

    def _project(self, svc: dict[str, Any]) -> dict[str, Any] | None:
        """What the cache keeps of a Service: see `project_service`; None for a Service that is not
        ours and holds no address (nothing to assign, nothing to take back)."""
        if not self._managed(svc) and not _ingress(svc):
            return None
        return project_service(svc)

    def _on_lost(self) -> None:
        self.metrics.is_leader.set(0)
        self.queue.put(LEADERSHIP)

    # -- config ---------------------------------------------------------------------------------

    def _load_config(self) -> None:
        cm = self.configmaps.get(f"{self.namespace}/{CONFIGMAP}")
        if cm is None:
            state = "keeping the last good config" if self.config else "nothing is assigned or removed"
            log.warning("no ConfigMap %s/%s: %s", self.namespace, CONFIGMAP, state)
            return
        raw = (cm.get("data") or {}).get("config")
        if raw == self._raw_seen:
            return
        self._raw_seen = raw
        try:
            new = config.load_config(raw)
        except config.ConfigError as exc:
            self._refuse(cm, f"key config: {exc}" if raw is not None else "no key 'config' in data")
            return
        self._config_error = None
        self.metrics.config_stale.set(0)
        self.metrics.config_loaded.set(1)
        if new == self.config:
            return
        self.config = new
        log.info("config loaded: %s", ", ".join(f"{p.name} ({', '.join(r.text for r in p.addresses)})"
                                                for p in new.pools) or "no pools")
        self._event(cm, "Normal", "ConfigLoaded", f"loaded {len(new.pools)} address pool(s)")
        self._config_warnings = [*new.warnings, *config.node_warnings(new, self._node_ips())]
        for warning in self._config_warnings:
            log.warning("config: %s", warning)
            self._event(cm, "Warning", "ConfigWarning", warning)  # dropped unless leading: see _resync
        if self.alloc is None:
            self.queue.put(LEADERSHIP)
            return
        for key in self.alloc.set_config(new):
            self._warned.discard(key)  # warn again under the new config
        self.queue.put_many(self._managed_keys())

    def _node_ips(self) -> list[tuple[str, str]]:
        """(node, InternalIP) of every Node: one LIST per config change; [] when RBAC forbids it."""
        try:
            nodes, _rv = self.client.list(kube.NODES)
        except kube.ApiError as exc:
            log.info("cannot list Nodes (%s): pools are not checked against node addresses", exc)
            return []
        return [(str(n["metadata"].get("name")), str(a.get("address"))) for n in nodes
                for a in (n.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]

    def _refuse(self, cm: Mapping[str, Any], why: str) -> None:
        self._config_error = why
        self.metrics.config_stale.set(1)
        state = "keeping the last good config" if self.config else "no config in force: nothing is assigned"
        log.error("invalid ConfigMap %s/%s, %s: %s", self.namespace, CONFIGMAP, state, why)
        self._event(cm, "Warning", "InvalidConfig", f"invalid config, {state}: {why}")

    # -- services -------------------------------------------------------------------------------

    def _managed(self, svc: Mapping[str, Any]) -> bool:
        return services.is_ours(svc.get("spec") or {}, self.lb_class, self.claim_unclassed)

    def _managed_keys(self) -> list[str]:
        return [services.key_of(s) for s in self.services.items() if self._managed(s)]

    def _resync(self) -> None:
        """Follow leadership: a leader rebuilds from status (holders first, oldest first), then
        assigns the rest; a follower holds no state (writes dropped meanwhile are redone next time)."""
        self.alloc = None
        self.metrics.ready.set(0)
        if not self.elector.is_leader():
            return
        self.metrics.is_leader.set(1)
        if self.config is None:
            log.warning("leading without a config: nothing is assigned or removed")
            return
        started = time.monotonic()
        try:  # the API's own answer, not the cache: the last leader's final writes may not be in it yet
            fresh, _rv = self.client.list(kube.SERVICES, each=self._project)
        except kube.ApiError as exc:
            _failures, delay = self.queue.put_later(LEADERSHIP)
            log.warning("leading, but listing Services failed (%s); trying again in %.1fs", exc, delay)
            return
        self.queue.forget(LEADERSHIP)
        self.alloc = allocator.Allocator(self.config)
        self._pending.clear()
        self._failed.clear()
        self._written.clear()
        self._evented.clear()
        self._warned.clear()
        self._placement_warned.clear()
        managed = [s for s in fresh if self._managed(s)]
        managed.sort(key=lambda s: (not services.status_ips(s), s["metadata"].get("creationTimestamp", ""),
                                    services.key_of(s)))
        for svc in managed:
            self._sync_service(svc)
        cm = self.configmaps.get(f"{self.namespace}/{CONFIGMAP}")
        if cm and self._config_error:
            self._event(cm, "Warning", "InvalidConfig", f"invalid config, keeping the last good one: "
                        f"{self._config_error}")
        for warning in self._config_warnings if cm else ():
            self._event(cm, "Warning", "ConfigWarning", warning)
        self.metrics.ready.set(1)
        log.info("ready: rebuilt state from %d Services in %.3fs (%d pending)", len(managed),
                 time.monotonic() - started, len(self._pending))

    def _sync(self, key: str) -> None:
        assert self.alloc is not None
        svc = self.services.get(key)
        if svc is not None and self._managed(svc):
            self._sync_service(svc)
            return
        held = self.alloc.ips_of(key)
        self._forget(key)
        if not held:
            return
        self.announcements.forget(held)
        log.info("%s: released %s (%s)", key, ", ".join(map(str, held)),
                 "deleted" if svc is None else "no longer a LoadBalancer of this class")
        if svc is not None and set(services.status_ips(svc)) <= set(held) and services.status_ips(svc):
            self._write_status(svc, [])
        self._retry_pending()

    def _forget(self, key: str) -> None:
        assert self.alloc is not None
        self.alloc.release(key)
        self._pending.discard(key)
        self._failed.pop(key, None)
        self._written.pop(key, None)
        self._evented.pop(key, None)
        self._warned.discard(key)
        self._placement_warned.pop(key, None)

    def _sync_service(self, svc: dict[str, Any]) -> None:
        assert self.alloc is not None
        key = services.key_of(svc)
        before = self.alloc.ips_of(key)
        result = self.alloc.assign(key, self._request(svc))
        if result.ok:
            self._assigned(svc, key, result)
        else:
            self._failed_alloc(svc, key, result)
        if before and set(before) - set(result.ips):
            self._retry_pending()

    def _assigned(self, svc: dict[str, Any], key: str, result: allocator.Result) -> None:
        self._pending.discard(key)
        self._failed.pop(key, None)
        desired = services.ingress_of(result.ips)
        if _ingress(svc) != desired and self._written.get(key) != desired:
            ips = ", ".join(map(str, result.ips))
            where = f"from pool {result.pool}" if result.pool else "outside every pool (kept)"
            log.info("%s: assigned %s %s", key, ips, where)
            self._write_status(svc, desired)
            if self._evented.get(key) != desired:  # a retried write is not a new allocation
                self._evented[key] = desired
                self._event(svc, "Normal", "IPAllocated", f"Assigned IP {ips} {where}")
        if result.outside_pools and key not in self._warned:
            self._warned.add(key)
            ips = ", ".join(str(ip) for ip in result.ips if not config.contains(self.config, ip))
            log.warning("%s: %s is in no pool of the current config; kept until the Service changes",
                        key, ips)
            self._event(svc, "Warning", "IPOutsidePools", f"{ips} is in no address pool any more; the "
                        "Service keeps it until you delete it or request another address")
        elif not result.outside_pools:
            self._warned.discard(key)
        self._check_placement(svc, key, result.ips, result.pool)

    # -- who may use a pool, where it can be announced (issue 13) -------------------------------

    def _request(self, svc: Mapping[str, Any]) -> allocator.Request:
        """The Service's request, with what the pools' service-allocation rules look at."""
        meta = svc.get("metadata") or {}
        ns = str(meta.get("namespace") or "")
        ns_obj = self.namespaces.get(ns) or {}
        tenant = allocator.Tenant(namespace=ns, namespace_labels=placement.labels_of(ns_obj),
                                  service_labels=meta.get("labels") or {})
        return dataclasses.replace(services.request_for(svc), tenant=tenant)

    def _on_namespace(self, _kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        """A Namespace's labels changed (informer thread): its Services may be admitted or not now.
        The first list's ADDED calls are skipped: no Service was looked at before it completed."""
        if not self.namespaces.synced.is_set():
            return
        ns = kube.object_key(new or old or {})
        self.queue.put_many([services.key_of(s) for s in self.services.items()
                             if (s.get("metadata") or {}).get("namespace") == ns and self._managed(s)])

    def _on_placement(self, *_args: Any) -> None:
        """Node labels or a speaker's subnets changed (informer thread)."""
        self._placement_view = None
        self.queue.put(PLACEMENT)

    def _view(self) -> placement.View:
        if self._placement_view is None:
            self._placement_view = placement.view_of(self.nodes.items(), self.speakers.items(),
                                                     nodes_known=self.nodes.synced.is_set())
        return self._placement_view

    def _check_placement(self, svc: Mapping[str, Any], key: str, ips: tuple[allocator.IP, ...],
                         pool_name: str | None, view: placement.View | None = None) -> None:
        """Warn once per Service when no node may announce its pool, or its address is in no
        speaker's subnet (Warning Events NoEligibleNode, NoMatchingSubnet)."""
        pool = self.config.pool(pool_name) if self.config and pool_name else None
        if pool is None or not (pool.node_selectors or not pool.interfaces):
            return
        warned = self._placement_warned.setdefault(key, set())
        if len(warned) == 2:
            return
        view = view or self._view()
        for reason, why in (("NoEligibleNode", placement.no_eligible_node(pool, view)),
                            ("NoMatchingSubnet", placement.no_matching_subnet(pool, ips, view))):
            if why is not None and reason not in warned:
                warned.add(reason)
                log.warning("%s: %s", key, why)
                self._event(svc, "Warning", reason, why)

    def _check_placement_all(self) -> None:
        """Node labels or subnets changed: the gauge per pool, and the holders not yet warned."""
        if self.config is None:
            return
        view = self._view()
        self.without_subnet.clear()  # pools gone from the config lose their series
        for name, missing in placement.without_subnet(self.config.pools, view).items():
            self.without_subnet.labels(name).set(1 if missing else 0)
        if self.alloc is None:
            return
        for key in list(self.alloc.holders()):
            svc, ips = self.services.get(key), self.alloc.ips_of(key)
            pool = config.pool_of(self.config, ips[0]) if ips else None
            if svc is not None and pool is not None:
                self._check_placement(svc, key, ips, pool.name, view)

    def _failed_alloc(self, svc: dict[str, Any], key: str, result: allocator.Result) -> None:
        assert result.failure is not None
        self._pending.add(key)
        if _ingress(svc) or self._written.get(key):
            self._write_status(svc, [])
        message = result.failure.message
        if self._failed.get(key) == message:
            return
        self._failed[key] = message
        self.metrics.failures.labels(result.failure.reason.value).inc()
        log.warning("%s: allocation failed (%s): %s", key, result.failure.reason.value, message)
        self._event(svc, "Warning", "AllocationFailed", f"Failed to allocate IP for {key}: {message}")

    def _retry_pending(self) -> None:
        self.queue.put_many(sorted(self._pending))

    # -- writes -----------------------------------------------------------------------------------

    def _write_status(self, svc: Mapping[str, Any], ingress: list[dict[str, str]]) -> None:
        meta = svc["metadata"]
        key = services.key_of(svc)
        self._written[key] = ingress
        body = {"status": {"loadBalancer": {"ingress": ingress or None}}}

        def write() -> None:
            self.metrics.status_writes.inc()
            self.client.patch_status(kube.SERVICES, meta["name"], body, meta["namespace"])

        self.writers.submit(key, write)

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if not self.elector.is_leader():
            return
        meta = obj["metadata"]
        involved = {"apiVersion": "v1", "kind": obj.get("kind") or "Service", "metadata": meta}
        event = events.Event(key=kube.object_key(obj), type=type_, reason=reason, message=message,
                             payload=(meta.get("namespace") or self.namespace, involved))
        verdict = self.event_writer.submit(event)
        if verdict is events.Verdict.AGGREGATED:
            self.metrics.events_aggregated.labels(reason).inc()
        elif verdict is events.Verdict.DROPPED:
            self.metrics.events_dropped.labels(reason).inc()

    def _send_event(self, event: events.Event) -> None:
        """Write one Event (the EventWriter's thread)."""
        ns, involved = event.payload  # type: ignore[misc]
        self.client.create_event(ns, involved, event.type, event.reason, event.message, COMPONENT)
        self.metrics.events_written.labels(event.reason).inc()

    def _send_summary(self, dropped: dict[str, int]) -> None:
        """One Warning Event on the ConfigMap for the Events a storm cost (EventWriter's thread)."""
        cm = self.configmaps.get(f"{self.namespace}/{CONFIGMAP}")
        if cm is None:
            return
        what = ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items()))
        involved = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": cm["metadata"]}
        self.client.create_event(self.namespace, involved, "Warning", "EventsDropped",
                                 f"{sum(dropped.values())} Events not written under a burst ({what}); "
                                 "the addresses were written; see l2lb_controller_events_dropped_total",
                                 COMPONENT)
        self.metrics.events_written.labels("EventsDropped").inc()

    def _write_failed(self, key: str, exc: kube.ApiError) -> None:
        """A status write failed (not NotFound; writer thread): forget what we wrote and look at the
        Service again after its backoff; warn once per failure streak."""
        self._written.pop(key, None)
        failures, delay = self.queue.put_later(key)
        self.write_failures.inc()
        if failures > 1:
            log.debug("%s: status write failed %d times in a row; next try in %.1fs", key, failures, delay)
            return
        log.warning("%s: status write failed (%s); retrying with backoff, first in %.1fs", key, exc, delay)
        svc = self.services.get(key)
        if svc is not None:
            self._event(svc, "Warning", "StatusWriteFailed", f"could not write the Service status ({exc}); "
                        "retrying with backoff (at most every 5 minutes)")

    def _write_ok(self, key: str) -> None:
        failures = self.queue.forget(key)
        if failures:
            log.info("%s: status written after %d failed attempt(s)", key, failures)

    def _update_metrics(self) -> None:
        if self.alloc is None:
            return
        self.metrics.set_pools(self.alloc.stats())
        self.metrics.allocated.set(len(self.alloc))
        self.metrics.outside_pools.set(len(self._warned))


SPEC_FIELDS = ("type", "loadBalancerClass", "loadBalancerIP", "ipFamilies", "ipFamilyPolicy", "ports",
               "selector", "externalTrafficPolicy")  # what services.request_for reads
META_FIELDS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations")


def project_service(svc: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Service the controller reads (allocation, status, Events) and the annotations
    of l2lb and MetalLB; the rest (kubectl's last-applied copy, managedFields, clusterIPs, ...) is
    not kept in memory."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    slim = {k: meta[k] for k in META_FIELDS if k in meta}
    if "annotations" in slim:  # ours only: kubectl's last-applied copy alone can be kilobytes
        slim["annotations"] = {k: v for k, v in slim["annotations"].items()
                               if k.startswith(services.PREFIXES)}
    return {"kind": "Service", "metadata": slim,
            "spec": {k: spec[k] for k in SPEC_FIELDS if k in spec},
            "status": {"loadBalancer": {"ingress": lb["ingress"]}} if lb.get("ingress") else {}}


def _ingress(svc: Mapping[str, Any]) -> list[dict[str, str]]:
    ing = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [{"ip": str(i.get("ip")), "ipMode": str(i.get("ipMode") or "VIP")} for i in ing if i.get("ip")]


def run(args: Any) -> int:
    """Entry point from cli: run until args.stop is set."""
    client = kube.KubeClient.from_config(args.kubeconfig, args.context, pool_size=args.workers + 4)
    qps, burst = getattr(args, "api_qps", API_QPS), getattr(args, "api_burst", API_BURST)
    log.info("controller %s: API %s, namespace %s, class %s%s", args.pod_name, client.config.source,
             args.namespace, args.loadbalancer_class, " (and none)" if args.claim_unclassed else " only")
    ctl = Controller(client, namespace=args.namespace, lb_class=args.loadbalancer_class,
                     identity=args.pod_name, timings=args.timings, workers=args.workers,
                     claim_unclassed=args.claim_unclassed, api_qps=qps, api_burst=burst)
    args.health = ctl.healthy
    ctl.start()
    args.stop.wait()
    ctl.stop()
    return 0
