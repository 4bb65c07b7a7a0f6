"""The speaker: which LoadBalancer IPs this node announces, and announcing them (component ring).

Flow: LAN heartbeats (``lanlink`` -> ``membership``) say which speakers are live; watches
(``speaker_watch``: Services, EndpointSlices, Nodes, registrations, keys) give the desired state;
the sync loop (on a change or carrier change, at the next expiry or view-age deadline, at least
every ``MAX_WAIT``) feeds what changed
into ``owner_index.OwnerIndex`` (owners of the live eligible candidates, recomputed only where an
input changed) -> ``ownership.step`` (hand-over, over this node's IPs only) ->
``announcer.Announcer`` -> ARP/NDP on the LAN.
``speaker_registry.Registry`` keeps this node's registration Lease and probes the API server.

Liveness never needs the API server (docs/membership.md has the full protocol):
* a peer is live while its heartbeats prove it hears us; it is gone ``dead_after`` later;
* this node answers only before its fence (``Membership.fence``): peers that hear it confirm
  its heartbeats, so it is silent before any of them may call it dead; a node that proves no
  peer while others are registered is cut off and silent;
* it is a *candidate* (flag CANDIDATE in its heartbeats) only while synced, keyed, with carrier
  on an interface, and not holding a stale API view while a peer's view is fresh. It becomes a
  candidate only after its fence holds, and drops candidacy only after it has gone silent, so
  a peer that sees the flag drop takes over at once, and one that sees it rise yields first;
* a global API outage changes nothing (every view is equally stale, every speaker keeps its last
  one and LAN liveness still replaces a dead node); a node whose own API view is stale while a
  peer's is fresh hands its IPs over (silent first, then the flag, then peers take over);
* SIGTERM: silent, LEAVING heartbeats (peers take over at once), registration deleted, exit.
Fails closed with a logged reason: not synced, no keys, no carrier, cut off, stale view.
Not guaranteed: a pause between the last fence check and the send system call itself.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import Any

import prometheus_client

from . import (
    announce_status,
    announcer,
    config,
    events,
    heap,
    ifaddrs,
    keyring,
    kube,
    kubeconfig,
    lanlink,
    membership,
    owner_index,
    ownership,
    placement_map,
    speaker_metrics,
    speaker_registry,
    speaker_watch,
    timing,
    writers,
)

log = logging.getLogger(__name__)

MAX_WAIT = 0.5  # seconds the sync loop sleeps at most: it wakes on every change, expiry and deadline
LOG_EACH_UP_TO = 20  # addresses gained or lost in one sync logged one by one at info; more: a summary
IFACE_REFRESH = 5.0  # seconds between reads of this node's interface addresses
COMPONENT = "l2lb-speaker"  # the Events' source
# nodeAssigned Events: 50 at once, then 10/s from a backlog of 1,000 (a node's death hands its
# survivors thousands of IPs at once; beyond that they are counted, and one summary Event says so)
EVENT_BUDGET = events.Budget(rate=10.0, burst=50.0, backlog=1000)


class Speaker:
    """Wires heartbeats, watches, ownership and announcer. start() / run_until(stop) / shutdown()."""

    def __init__(self, client: kube.KubeClient, probe_client: kube.KubeClient, *, namespace: str,
                 node: str, identity: str, lb_class: str, t: timing.LanTimings, interfaces: Iterable[str],
                 secret: str = "l2lb-memberlist", claim_unclassed: bool = True) -> None:
        self.client, self.ns, self.node, self.lb_class, self.t = client, namespace, node, lb_class, t
        self.clients = (client, probe_client)  # every request this speaker sends goes through one
        self.claim_unclassed = claim_unclassed
        self.announcer = announcer.Announcer(interfaces)
        self._wake = threading.Event()  # the sync loop's: a change to apply, or the link's carrier
        self.link = lanlink.LanLink(self.announcer.interfaces, self._on_frames, on_carrier=self._wake.set)
        self.members = membership.Membership(
            node, incarnation=time.time_ns(), first_seq=secrets.randbits(32), dead_after=t.dead_after,
            fence_margin=t.fence_margin, confirm_fresh=t.confirm_fresh)
        self._mlock = threading.Lock()  # membership is touched by receive, heartbeat and sync threads
        self.registry = speaker_registry.Registry(probe_client, namespace, node, identity, t)
        self.status = announce_status.StatusWriter(client, node)  # kubectl get ipannouncements
        handlers = speaker_watch.Handlers(services=self._service_changed, slices=self._slice_changed,
                                          nodes=self._node_changed, registrations=self._registration_changed,
                                          keys=self._keys_changed, config=self._config_changed)
        self.watches = speaker_watch.Watches(client, namespace, secret, handlers, lb_class=lb_class,
                                             claim_unclassed=claim_unclassed)
        self.plan = ownership.Plan()
        self.index = owner_index.OwnerIndex()
        self.heap = heap.Settler()
        self._changes_lock = threading.Lock()  # guards the three change sets below (informer threads add)
        self._changed_services: set[str] = set()  # keys whose Service changed
        self._changed_endpoints: set[str] = set()  # Service keys whose EndpointSlices changed
        self._slices_of: dict[str, set[str]] = {}  # Service key -> its EndpointSlice keys
        self._members_dirty = True  # Nodes or registrations changed
        self._eligible: frozenset[str] = frozenset()
        self.config: config.Config | None = None  # the last good pools (None: none loaded yet)
        self._config_raw: str | None = None
        self.config_errors = 0
        self._placement_dirty = True  # pools, Node labels or registrations changed
        self.placement = placement_map.Placement(None, {}, {})
        self._where: dict[str, frozenset[str] | None] = {}  # ip -> my interfaces for it (this placement)
        self._ifaces_read = float("-inf")  # when this node's interface addresses were last read
        self._applied: tuple[frozenset[str], placement_map.Placement] | None = None  # last _apply input
        self.recompute = speaker_metrics.Timer()  # seconds spent updating owners, per sync that changed any
        self.ready, self.not_ready_why = False, "starting"
        self.keys_loaded = False
        self._leaving = False
        self.keyring_errors = 0
        self._seen_changes = -1
        self._last_live: frozenset[str] | None = None
        self._ranked: frozenset[str] | None = None  # the nodes the owner index last ranked (if eligible)
        self._stepped_candidacy: int | None = None  # the candidacy (its first seq) a step has counted us in
        # nodeAssigned Events at a budget: a takeover of thousands of IPs writes a few dozen at once,
        # the rest at EVENT_BUDGET.rate, after the IPAnnouncements; overflow counted and summarised
        self.events = writers.EventWriter(self._send_event, self._send_summary, lambda: True,
                                          budget=EVENT_BUDGET, status_busy=self.status.busy)
        self._last_beat = self._last_sync = float("inf")  # monotonic; inf until started
        self._fence_moved = float("-inf")  # when a frame last moved the fence
        self._ack_soon = False  # the live set changed: send a heartbeat once the change is applied
        self._candidacy_stepped = 0.0  # perf_counter of this candidacy's first step
        self._peer_fresh_since: float | None = None  # monotonic: since when some peer's API view is fresh

    # -- inputs ------------------------------------------------------------------------------

    def _on_frames(self, frames: lanlink.Received, _ifname: str) -> None:
        """Every peer's every heartbeat, each at the time it arrived: take them, and move a holding
        fence forward when the guard that set it confirmed us again (else a few dozen times a second:
        fence() costs O(peers), so not per frame). Waiting for the next sync instead would leave
        us silent in between: the announcer's fence never revives on its own."""
        now = time.monotonic()
        with self._mlock:
            for arrived, payload in frames:
                self.members.receive(payload, arrived)
            changed = self.members.changes != self._seen_changes
            fence = None
            throttled = now - self._fence_moved < self.t.heartbeat_interval / 4
            if self.members.fence_holder_confirmed() or not throttled:
                fence, self._fence_moved = self.members.fence(now), now
        if fence is not None:
            self.announcer.extend_fence(fence)
        if changed:
            self._wake.set()

    def _service_changed(self, _kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        with self._changes_lock:
            self._changed_services.add(kube.object_key(new or old or {}))
        self._wake.set()

    def _slice_changed(self, _kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        key = kube.object_key(new or old or {})
        before = ownership.slice_service_key(old) if old else None
        after = ownership.slice_service_key(new) if new else None
        with self._changes_lock:
            if before is not None and before != after:
                self._slices_of.get(before, set()).discard(key)
                self._changed_endpoints.add(before)
            if after is not None:
                self._slices_of.setdefault(after, set()).add(key)
                self._changed_endpoints.add(after)
        self._wake.set()

    def _node_changed(self, _kind: str, _new: Any, _old: Any) -> None:
        self._members_dirty = self._placement_dirty = True
        self._wake.set()

    def _config_changed(self, _kind: str, new: dict[str, Any] | None, _old: Any) -> None:
        """The pools: where each may be announced. An invalid config leaves the last good one in
        force (the controller reports it with an Event; the speaker logs it)."""
        raw = ((new or {}).get("data") or {}).get("config")
        if new is None or raw is None or raw == self._config_raw:
            return
        self._config_raw = raw
        try:
            loaded = config.load_config(raw)
        except config.ConfigError as exc:
            self.config_errors += 1
            log.error("ConfigMap %s: %s; keeping the last good pools", speaker_watch.CONFIG_MAP, exc)
            return
        self.config = loaded
        self._placement_dirty = True
        self._wake.set()

    def _registration_changed(self, kind: str, _new: Any, old: dict[str, Any] | None) -> None:
        if kind == "DELETED" and speaker_registry.lease_node(old or {}) == self.node and not self._leaving:
            log.warning("registration Lease of %s deleted by someone else: writing it again", self.node)
            self.registry.lost()
        self._members_dirty = self._placement_dirty = True
        self._wake.set()

    def _keys_changed(self, kind: str, new: dict[str, Any] | None, _old: Any) -> None:
        if kind == "DELETED":
            log.error("Secret with the heartbeat keys was deleted: keeping the keys loaded before (%s)",
                      "some" if self.keys_loaded else "none: silent")
            return
        try:
            keys = keyring.from_secret(new or {})
        except keyring.KeyringError as exc:
            self.keyring_errors += 1
            log.error("heartbeat keys unusable (%s); %s", exc,
                      "keeping the keys loaded before" if self.keys_loaded else "silent until fixed")
            return
        with self._mlock:
            changed = set(keys) != set(self.members.keys.values())
            self.members.set_keys(keys)
        self.registry.set_keys(keys)  # published, so a rotation goes on only once we hold the bridge
        if changed:
            log.info("heartbeat keys loaded: %d (ids %s)", len(keys),
                     keyring.format_key_ids([keyring.key_id(k) for k in keys]))
        self.keys_loaded = True
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, sync_timeout: float = 60.0, stop: threading.Event | None = None) -> bool:
        """Open sockets, start watches, wait until synced, then register and beat."""
        self.announcer.start()
        self.link.start()
        self.watches.start()
        missing = self.watches.wait_synced(sync_timeout, lambda: stop is not None and stop.is_set())
        if missing is not None:
            log.error("watch %s not synced; not announcing", missing)
            return False
        if not self.keys_loaded:
            log.error("no heartbeat keys (Secret missing or invalid): silent, trusting no peer")
        self._last_beat = self._last_sync = time.monotonic()
        # the owner index from the caches before the first heartbeat, ranked over the speakers we
        # expect (see _sync): the first syncs, when peers see us become a candidate and yield, are
        # then not held up by parsing every Service (~1 s at 10,000, an unanswered second in a
        # hand-back) nor by ranking every address (~0.3 s at 10,000 on a busy host). The peers
        # first, then us: what we win then has the peer answering it now as its previous owner
        with self._mlock:
            self._refresh_members()
            peers = self.members.registered
        self._update_owners(peers, nodes_changed=True)
        self._update_owners(peers | {self.node}, nodes_changed=False)
        self.heap.settle(self._last_sync)  # caches and index loaded: no full collection walks them again
        # interfaces before the first registration write: a registration without them, then with
        # them, would change every peer's placement twice (a full owner recompute each time)
        self._publish_interfaces(self._last_sync)
        self.registry.start()
        self.status.start()
        self.link.start_beats(self._heartbeat, self.t.heartbeat_interval)
        self.events.start()
        return True

    def run_until(self, stop: threading.Event) -> None:
        threading.Thread(target=lambda: (stop.wait(), self._wake.set()), name="speaker-stop",
                         daemon=True).start()  # SIGTERM wakes the loop at once: the hand-over starts now
        wait = 0.0
        while not stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            now = time.monotonic()
            try:
                self._sync(now)
                self.heap.due(now)
                wait = self._next_wake(now)
            except Exception:
                log.exception("sync failed; silencing until the next one succeeds")
                self.announcer.silence()
                wait = MAX_WAIT

    def _next_wake(self, now: float) -> float:
        """Sleep until the earliest expiry (a peer's proof, a fence), pending gain or the moment our
        API view becomes too stale to stay a candidate, at most MAX_WAIT. Frames that change the
        live set, watch events and carrier changes wake the loop at once."""
        with self._mlock:
            at = self.members.next_expiry(now)
        due = self.plan.next_due()
        if due is not None and due > now:  # a due gain blocked on an acknowledgement waits for a frame
            at = min(at, due)
        stale = now - self._view_age(now) + self.t.api_yield_after  # when our view turns stale to yield
        if stale > now:
            at = min(at, stale)
        if self._peer_fresh_since is not None:  # when a peer's view has been fresh long enough to yield to
            held = self._peer_fresh_since + self.t.api_yield_hold
            if held > now:
                at = min(at, held)
        return min(MAX_WAIT, max(0.002, at - now + 0.001))

    def shutdown(self) -> None:
        """Graceful hand-over: silent first, then LEAVING on the LAN, then the registration goes."""
        self.announcer.silence()
        self.link.stop_beats()
        with self._mlock:
            self.members.leaving = True
        for _copy in range(3):  # three frames: one lost frame must not turn a hand-over into a timeout
            payload = self._heartbeat(time.monotonic())
            if payload is not None:
                self.link.send(payload)
            time.sleep(0.005)
        self.registry.stop()
        self.status.stop()
        self.events.stop()
        self._leaving = True  # the DELETED our own release brings is not someone else's doing
        self.registry.release()
        self.link.stop()
        self.announcer.stop()
        self.watches.stop()

    # -- heartbeats ----------------------------------------------------------------------------

    def healthy(self) -> bool:
        """For /healthz (the liveness probe): the heartbeat and sync threads are still turning."""
        now = time.monotonic()
        return (now - self._last_beat < 10 * self.t.heartbeat_interval + 1 and now - self._last_sync < 5.0
                and self.link.alive())

    def _heartbeat(self, now: float) -> bytes | None:
        """The next heartbeat payload (the link sends it: every interval, or at once when asked).
        A beat made before LEAVING but sent after it is older than the LEAVING ones: peers drop it."""
        self._last_beat = now
        with self._mlock:
            self.members.candidate = self.ready
            self.members.api_fresh = self.api_fresh(now)
            began = self.members.candidate_since_seq
            payload = self.members.heartbeat(now)
            if began is None and self.members.candidate_since_seq is not None:
                self._wake.set()  # a candidate from this beat on: the sync loop takes our share now
            return payload

    # -- the sync step -----------------------------------------------------------------------

    def _peer_fresh_for(self, now: float, peer_fresh: bool) -> float | None:
        """How long some proven peer's API view has been fresh, without a break (None: none is)."""
        if not peer_fresh:
            self._peer_fresh_since = None
        elif self._peer_fresh_since is None:
            self._peer_fresh_since = now
        return now - self._peer_fresh_since if self._peer_fresh_since is not None else None

    def _readiness(self, now: float, peer_fresh_for: float | None) -> tuple[bool, str]:
        if not self.keys_loaded:
            return False, "no heartbeat keys"
        if not self.link.has_carrier():
            return False, "no announcing interface has carrier"
        if self.t.yields(self._view_age(now), peer_fresh_for):
            return False, "my API view is stale while a peer's is fresh"
        return True, "ready"

    def _view_age(self, now: float) -> float:
        """How stale this node's view of the desired state may be: since the last answered probe,
        or since its watches started failing (a hung or backing-off watch while GETs still work)."""
        failing = self.watches.failing_since()
        age = now - self.registry.last_ok
        return max(age, now - failing) if failing is not None else age

    def api_fresh(self, now: float) -> bool:
        return self._view_age(now) < self.t.api_stale_after

    def _set_ready(self, ready: bool, why: str) -> None:
        if ready == self.ready:
            return
        if not ready:
            self.announcer.silence()  # silent before the flag drops: peers take over at once
        self.ready, self.not_ready_why = ready, why
        log.info("%s", "candidate again" if ready else f"not a candidate: {why}")
        self.link.beat_soon()

    def _sync(self, now: float) -> None:
        began = time.perf_counter()
        self._last_sync = now
        self._publish_interfaces(now)
        nodes_changed = self._members_dirty
        with self._mlock:
            self._refresh_members()
            fence = self.members.fence(now)
            peers = self.members.live_candidates(now)
            since = self.members.candidate_since_seq
            seen_by = self.members.acked_since(since)
            first_step = since is not None and since != self._stepped_candidacy  # of this candidacy
            ack_when_applied = self.members.ack_when_applied() if first_step else frozenset()
            peer_fresh_for = self._peer_fresh_for(now, self.members.api_fresh_peer(now))
            self._set_ready(*self._readiness(now, peer_fresh_for))
            self._seen_changes = self.members.changes
            expected = self.members.registered
        me_live = self.ready and now < fence and since is not None
        live = peers | {self.node} if me_live else peers
        if me_live and first_step:
            self._stepped_candidacy, self._candidacy_stepped = since, began
        live_seen = None  # (wall, thread CPU) when this sync saw the live set change
        if live != self._last_live:
            log.info("live speakers: %s", ", ".join(sorted(live)) or "none")
            self._ack_soon = True  # once applied below, acknowledge at once: joiners wait for it
            live_seen = (time.perf_counter(), time.thread_time())
        # until our first candidacy step we answer nothing (nothing is ours to gain: `mine` below),
        # so the index ranks who we expect to be live then: the registered speakers and us, as
        # well as those proven so far. That ranking, done before our flag rises, is then not part
        # of the first candidacy sync that a returning owner's hand-back waits for
        started = self._ever_stepped
        self._update_owners(live if started else live | expected | {self.node}, nodes_changed)
        self._last_live = live
        waiting = self.plan.pending  # gains held for a hand-over until this step
        mine = self.index.owned_by(self.node) if me_live else frozenset()
        self.plan = ownership.step(self.plan, mine, self.index.previous, self.node, live, now,
                                   self.t.handover_delay, seen_by=seen_by,
                                   ack_when_applied=ack_when_applied if me_live else frozenset())
        if not me_live:
            self.announcer.silence()
        owned = self.plan.announce if me_live else frozenset()
        changed = self._answer(owned)
        with self._mlock:  # the candidacies this sync saw begin are in our answers now: acknowledge them
            self.members.applied(self._seen_changes)
            fence = self.members.fence(time.monotonic())  # as of now: frames moved it during this sync
        if me_live:
            self.announcer.set_fence(fence)
        self._flush_ack()  # before the bookkeeping below: a returning peer waits for it, in the dark
        if changed is not None:
            self._record(owned, *changed, live_seen)
        if waiting and me_live:
            self._log_hand_over(waiting, began)
        self._prepare()

    def _log_hand_over(self, waited: Mapping[str, float], began: float) -> None:
        """Gains that waited for a hand-over and are answered now (a return: the holders have
        acknowledged it): how long after this candidacy's first step, and after this sync began."""
        taken = sum(1 for ip in waited if ip in self.plan.announce)
        if taken:
            answering = self.announcer.answering_since
            log.info("took over %d addresses after their hand-over: answered %.0f ms after this candidacy's "
                     "first step, %.0f ms after this sync began", taken,
                     (answering - self._candidacy_stepped) * 1e3, (answering - began) * 1e3)

    @property
    def _garps_inline(self) -> bool:
        """This sync's answers send their first gratuitous ARPs themselves: no gain waits (see _answer)."""
        return not self.plan.pending

    @property
    def _ever_stepped(self) -> bool:
        """A sync has stepped a candidacy of ours since we started (see the early ranking in _sync)."""
        return self._stepped_candidacy is not None

    def _prepare(self) -> None:
        """Templates and filter for what this node may gain next: what it would inherit from any
        one peer, gains waiting for a hand-over, and before its first candidacy step what that
        step will claim (the early ranking: a returning owner's share, thousands at 10,000
        Services, would otherwise be prepared in that step, delaying the hand-back by ~0.1 s);
        taking them then only swaps the answering snapshot. After the ack: off the path of this
        sync's own change."""
        standby = self.index.standby_of(self.node)  # the same object while it holds: nothing to do
        if not self._ever_stepped:
            standby = standby.union(self.index.owned_by(self.node))
        if self.plan.pending:
            standby = standby.union(self.plan.pending)
        self.announcer.prepare(standby)

    def _flush_ack(self) -> None:
        """A heartbeat right after a changed view is applied: a peer that became a candidate sees
        our acknowledgement (we are silent for its IPs by now) without waiting a whole interval."""
        if self._ack_soon:
            self._ack_soon = False
            self.link.beat_soon()

    def _refresh_members(self) -> None:
        """Known nodes and registered speakers, from the watches (under the membership lock)."""
        if not self._members_dirty:
            return
        self._members_dirty = False
        self.members.forget(time.monotonic())  # peers silent for a minute (deleted nodes) go
        nodes = self.watches.items("nodes")
        self.members.set_known(n["metadata"]["name"] for n in nodes)
        ready = {n["metadata"]["name"] for n in nodes if ownership.node_ready(n)}
        registered = {speaker_registry.lease_node(r) for r in self.watches.items("registrations")}
        self.members.set_registered(n for n in registered if n in ready)

    def _update_placement(self) -> None:
        """Rebuild where each pool may be announced when pools, Node labels or registrations changed;
        the owners are recomputed only if the rules' inputs really differ."""
        if not self._placement_dirty:
            return
        self._placement_dirty = False
        nodes = self.watches.items("nodes")
        labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes}
        published = {speaker_registry.lease_node(r): speaker_registry.published_interfaces(r)
                     for r in self.watches.items("registrations")}
        fresh = placement_map.Placement(self.config, labels, {n: v for n, v in published.items() if n},
                                        previous=self.placement)
        if fresh != self.placement:
            self.placement, self._where = fresh, {}
            self.index.set_allowed(fresh.allowed)

    def _my_ports(self, ip: str) -> frozenset[str] | None:
        if ip not in self._where:
            self._where[ip] = self.placement.ports(ip, self.node)
        return self._where[ip]

    def _publish_interfaces(self, now: float) -> None:
        """Every few seconds: this node's announcing interfaces and their subnets, for every
        speaker's placement (an address added or moved shows within IFACE_REFRESH)."""
        if now - self._ifaces_read < IFACE_REFRESH:
            return
        self._ifaces_read = now
        try:
            found = ifaddrs.read(self.announcer.interfaces)
        except OSError as exc:
            log.warning("cannot read interface addresses: %s", exc)
            return
        self.registry.set_interfaces(found)

    def _answer(self, owned: frozenset[str]) -> tuple[set[str], set[str]] | None:
        """Answer exactly `owned` from now on: (gained, lost), or None when nothing changed."""
        if self._applied is not None and owned == self._applied[0] and self.placement is self._applied[1]:
            return None  # nothing changed: skip the per-IP work
        if self._applied is None or self.placement is not self._applied[1]:
            self.announcer.set_where(self._my_ports)  # pools' interfaces or subnets may differ now
        self._applied = (owned, self.placement)
        # while gains still wait for other holders' acknowledgements (a returning owner's hand-back,
        # one batch per holder), the first gratuitous ARPs go to the announcer's thread: sent here,
        # thousands of them held up the next holder's batch (150-350 ms at 10,000 Services)
        return self.announcer.update(owned, announce_now=self._garps_inline)

    def _record(self, owned: frozenset[str], gained: set[str], lost: set[str],
                live_seen: tuple[float, float] | None) -> None:
        """After the answers changed: log lines, IPAnnouncements, Events and our registration."""
        if live_seen is not None and (gained or lost):
            answering = self.announcer.answering_since
            self._log_takeover_cost(len(gained), len(lost), answering, self._garps_inline, *live_seen)
        each = logging.INFO if len(gained) + len(lost) <= LOG_EACH_UP_TO else logging.DEBUG
        if each == logging.DEBUG:
            log.info("announcing %d more addresses and %d fewer from %s (each at debug level)",
                     len(gained), len(lost), self.node)
        for ip in sorted(lost):
            choice = self.index.choices.get(ip)
            owner = choice.owner if choice is not None else None
            log.log(each, "stopped announcing %s (owner now: %s)", ip, owner or "nobody")
            why = ("its desired owner went silent" if owner == self.node else
                   "no eligible live node" if choice is not None else "no longer allocated")
            self.status.released(ip, owner, why)
        for ip in sorted(gained):
            log.log(each, "announcing %s from %s", ip, self.node)
            choice = self.index.choices.get(ip)
            services = choice.services if choice is not None else ()
            self.status.announced(ip, services, taken_from=self.index.previous.get(ip))
            for svc in services:
                self._queue_event(svc, ip)
        if gained or lost:
            self.registry.publish(owned)

    @staticmethod
    def _log_takeover_cost(gained: int, lost: int, answering: float, garps_inline: bool, wall0: float,
                           cpu0: float) -> None:
        """How long a change of the live set took to reach the LAN: until the gained addresses were
        answered, and until their first gratuitous ARPs were sent; and how much of it was this
        thread's own work: the rest waited for a core or the GIL (troubleshooting slow takeovers)."""
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        log.info("live set applied: %d addresses gained, %d lost; answers in place %.0f ms after it "
                 "changed, gratuitous ARPs %s after %.0f ms (%.0f ms of it this thread's CPU)",
                 gained, lost, max(0.0, answering - wall0) * 1e3,
                 "sent" if garps_inline else "queued for the announcer's thread", wall * 1e3, cpu * 1e3)

    def _update_owners(self, ranked: frozenset[str], nodes_changed: bool) -> None:
        """Feed the index what changed since the last sync (Services, EndpointSlices, the candidates:
        the eligible nodes among `ranked`) and recompute the owners of the IPs that depend on it."""
        began = time.perf_counter()
        with self._changes_lock:
            services, self._changed_services = self._changed_services, set()
            endpoints, self._changed_endpoints = self._changed_endpoints, set()
            slices_of = {key: tuple(self._slices_of.get(key, ())) for key in services | endpoints}
        for key in services:
            obj = self.watches.get("services", key)
            self.index.set_service(key, ownership.service_view(obj, self.lb_class, self.claim_unclassed)
                                   if obj is not None else None)
        for key in services | endpoints:
            slices = [s for s in map(functools.partial(self.watches.get, "slices"), slices_of[key]) if s]
            self.index.set_endpoints(key, ownership.endpoints_of(slices) if slices else None)
        if nodes_changed or ranked != self._ranked:
            self._eligible = ownership.eligible_nodes(self.watches.items("nodes"), ranked)
            self._ranked = ranked
        self._update_placement()
        self.index.set_candidates(ranked & self._eligible)
        if self.index.flush():
            self.recompute.observe(time.perf_counter() - began)

    # -- events ------------------------------------------------------------------------------

    def _queue_event(self, svc: str, ip: str) -> None:
        self.events.submit(events.Event(key=svc, type="Normal", reason="nodeAssigned",
                                        message=f"announcing {ip} from node {self.node}"))

    def _send_event(self, event: events.Event) -> None:
        """Write one Event about a Service (the EventWriter's thread); gone Services get none."""
        obj = self.watches.get("services", event.key)
        if obj is None:
            return
        obj = {"apiVersion": "v1", "kind": "Service", **obj}
        self.client.create_event(obj["metadata"]["namespace"], obj, event.type, event.reason, event.message,
                                 COMPONENT)

    def _send_summary(self, dropped: dict[str, int]) -> None:
        """One Warning Event on this Node for the Events a burst cost (the EventWriter's thread)."""
        node = self.watches.get("nodes", self.node)
        if node is None:
            return
        what = ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items()))
        involved = {"apiVersion": "v1", "kind": "Node", "metadata": node["metadata"]}
        self.client.create_event("default", involved, "Warning", "EventsDropped",
                                 f"{sum(dropped.values())} Events not written under a burst ({what}); "
                                 "kubectl get ipannouncements says who announces each IP", COMPONENT)


def run(args: Namespace) -> int:
    """Entry point from cli: run until args.stop is set, then hand over."""
    t: timing.LanTimings = getattr(args, "lan_timings", None) or timing.LanTimings()
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
        timeout = t.api_stale_after / 2  # a probe answered after the view went stale is useless
        probe_client = kube.KubeClient.from_config(args.kubeconfig, getattr(args, "context", None),
                                                   connect_timeout=timeout, read_timeout=timeout)
    except kubeconfig.KubeConfigError as exc:
        log.error("%s", exc)
        return 2
    sp = Speaker(client, probe_client, namespace=args.namespace, node=args.node_name,
                 identity=getattr(args, "pod_name", None) or args.node_name, lb_class=args.loadbalancer_class,
                 t=t, interfaces=interfaces, secret=getattr(args, "memberlist_secret", "l2lb-memberlist"),
                 claim_unclassed=getattr(args, "claim_unclassed", True))
    log.info("speaker %s: heartbeat %.2fs, dead after %.2fs, hand-over %.2fs, interfaces %s", args.node_name,
             t.heartbeat_interval, t.dead_after, t.handover_delay, ", ".join(interfaces))
    prometheus_client.REGISTRY.register(speaker_metrics.Collector(sp))
    args.health = sp.healthy
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
