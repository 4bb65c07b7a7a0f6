"""Owners kept up to date incrementally: recompute only the IPs whose inputs changed (core ring, pure).

Place in the flow: speaker (watch changes, live set) -> ``OwnerIndex`` -> changed owners ->
``ownership.step``. ``ownership.choose`` recomputes every IP from scratch (one sha256 per node per
IP: 0.66 s at 10,000 IPs x 100 nodes); the index keeps, per IP, its Services, its Choice and the
owner's rendezvous score, with reverse maps (Service -> IPs, owner -> IPs), so that:

* a Service or EndpointSlice change recomputes that Service's IPs: O(its IPs x candidates);
* a candidate leaving touches only the IPs it owned (any other IP keeps its owner: its best
  candidate is still there), and computes none of them: each IP keeps its runner-up from the same
  ranking pass (``ownership.choose_ip_ranked``), which inherits it, so a node's death costs
  O(IPs it owned) dictionary work. An heir's own runner-up is unknown until the IP is computed
  again; such IPs, and those whose runner-up left too, are computed when their owner leaves;
* a candidate joining costs one score per IP (does it beat the owner, or the runner-up?) and
  computes nothing for a plain Service's IP (one Service, ``externalTrafficPolicy: Cluster``):
  every candidate may own it, so a joiner that beats the owner takes it over and the old owner
  becomes the runner-up, exactly; one that beats only the runner-up becomes it. Other IPs the
  joiner may win are recomputed: with ``Local`` it counts only if it has an endpoint, and a
  joining node can turn an empty intersection non-empty (see ``ownership.choose_ip``);
* a change of who may announce where (``set_allowed``: pools' node selectors, nodes' labels and
  interfaces) compares each IP's allowed candidates before and after, and recomputes the IPs
  whose candidates differ.

Same answers as ``ownership.choose`` over the same inputs (tests/unit/test_owner_index.py checks
it after random sequences of changes). Not thread-safe: one caller (the speaker's sync loop).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from .ownership import (
    Allowed,
    Choice,
    Endpoints,
    Ranked,
    ServiceView,
    Why,
    choose_ip_ranked,
    ranked,
    restrict,
    within,
)


class OwnerIndex:
    """ip -> Choice, updated by set_service / set_endpoints / set_candidates / set_allowed, then flush()."""

    def __init__(self) -> None:
        self._services: dict[str, ServiceView] = {}  # key -> view (Services with at least one IP)
        self._endpoints: dict[str, Endpoints] = {}  # service key -> ready endpoints
        self._ip_services: dict[str, set[str]] = {}  # ip -> keys of the Services announcing it
        self._candidates: frozenset[str] = frozenset()
        self._allowed: Allowed | None = None
        self._best: dict[str, Ranked] = {}  # ip -> (score, owner) while it has an owner
        self._runner_up: dict[str, Ranked] = {}  # ip -> (score, node) owning it if its owner alone left
        self._unranked: set[str] = set()  # IPs whose runner-up is unknown (they took one over)
        self._orphaned: set[str] = set()  # IPs whose owner left the candidates: its runner-up inherits
        self._joined: dict[str, Choice] = {}  # IPs a joiner took over in place, for flush() to report
        self._dirty: set[str] = set()
        self.choices: dict[str, Choice] = {}
        self.by_owner: dict[str, set[str]] = {}  # node -> IPs it owns
        self._owned_frozen: dict[str, frozenset[str]] = {}  # owned_by's answers until the owner's IPs change
        self.by_runner_up: dict[str, set[str]] = {}  # node -> IPs it inherits if their owner alone leaves
        self._standby_frozen: dict[str, frozenset[str]] = {}  # standby_of's answers, the same way
        self.previous: dict[str, str | None] = {}  # ip -> its owner before its latest change
        self.recomputed = 0  # IPs recomputed so far (a cost counter for metrics and the bench)

    # -- inputs ---------------------------------------------------------------------------------

    def set_service(self, key: str, view: ServiceView | None) -> None:
        """A Service's view now (None: deleted or not ours)."""
        old = self._services.pop(key, None)
        if old is not None:
            for ip in old.ips:
                keys = self._ip_services.get(ip)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._ip_services[ip]
                self._dirty.add(ip)
        if view is not None and view.ips:
            self._services[key] = view
            for ip in view.ips:
                self._ip_services.setdefault(ip, set()).add(key)
                self._dirty.add(ip)

    def set_endpoints(self, key: str, eps: Endpoints | None) -> None:
        """A Service's ready endpoints now (None: no EndpointSlices)."""
        if self._endpoints.get(key) == eps:
            return
        if eps is None:
            self._endpoints.pop(key, None)
        else:
            self._endpoints[key] = eps
        view = self._services.get(key)
        if view is not None:
            self._dirty.update(view.ips)

    def set_candidates(self, nodes: Iterable[str]) -> None:
        """Eligible nodes with a live speaker."""
        nodes = frozenset(nodes)
        removed, added = self._candidates - nodes, nodes - self._candidates
        self._candidates = nodes
        for node in removed:
            self._orphaned.update(self.by_owner.get(node, ()))
        if added:
            self._dirty |= self._orphaned  # an added node may beat a runner-up: recompute those
            self._orphaned = set()
            self._dirty.update(self._admit(added))

    def set_allowed(self, allowed: Allowed | None) -> None:
        """Which nodes may announce each IP (None: any). An IP is recomputed only if the candidates
        that may announce it differ: a change about nodes that are not candidates (a speaker
        leaving or not yet live) costs a comparison per IP, not a computation."""
        old, self._allowed = self._allowed, allowed
        cands = self._candidates
        # IPs of one pool and subnet share their allowed sets: compare each pair of sets once (the
        # memo holds the sets, so no id is reused while it lives)
        memo: dict[tuple[int, int], tuple[object, object, bool]] = {}
        for ip in self.choices:
            if ip in self._dirty:
                continue
            before = old(ip) if old is not None else None
            after = allowed(ip) if allowed is not None else None
            seen = memo.get((id(before), id(after)))
            if seen is None:
                differs = within(cands, before) != within(cands, after)
                seen = memo[id(before), id(after)] = (before, after, differs)
            if seen[2]:
                self._dirty.add(ip)

    def _admit(self, added: frozenset[str]) -> list[str]:
        """Rank the added candidates against each IP's owner and runner-up: a plain IP's new ranks
        are set in place (no computation); returns the other IPs they may change, to recompute."""
        recompute, takeovers = [], []
        allowed, best_of, runner_of = self._allowed, self._best, self._runner_up
        for ip, choice in self.choices.items():  # one pass over every IP: kept lean
            if choice.why is Why.NO_READY_ENDPOINTS or ip in self._dirty:
                continue
            if len(self._ip_services.get(ip, ())) > 1 and self._shared_local(ip):
                recompute.append(ip)
                continue
            only = allowed(ip) if allowed is not None else None
            places = [ranked(node, ip) for node in added if only is None or node in only]
            if not places:
                continue
            best, runner, top = best_of.get(ip), runner_of.get(ip), max(places)
            if best is None:
                recompute.append(ip)  # nobody may announce it now: may the joiner? compute it
            elif top > best or (ip not in self._unranked and (runner is None or top > runner)):
                ranks = self._ranks_with(ip, places, best, runner)
                if ranks is None:
                    recompute.append(ip)
                elif ranks[0] is not best:
                    takeovers.append((ip, *ranks))
        for ip, best, runner in takeovers:
            old = self.choices[ip]
            new = self._joined[ip] = Choice(ip=ip, owner=best[1], why=Why.OWNED, services=old.services)
            self._record(ip, old, new, best, runner)
            self._unranked.discard(ip)  # the runner-up is the old owner: the best of all the others
        return recompute

    def _ranks_with(self, ip: str, places: list[Ranked], best: Ranked,
                    runner: Ranked | None) -> tuple[Ranked, Ranked | None] | None:
        """ip's (owner, runner-up) once the joiners' places are ranked in, for a plain IP (a changed
        runner-up is set in place); None for any other: a joiner may change its owner or runner-up
        (Local: does the joiner have an endpoint? compute it)."""
        if not self._plain(ip):
            return None
        known = ip not in self._unranked  # else the runner-up is unknown until the owner changes
        for place in sorted(places):
            if place > best:
                best, runner, known = place, best, True  # the old owner was the best of all the rest
            elif known and (runner is None or place > runner):
                runner = place
        if runner is not None:
            self._set_runner_up(ip, runner)
        return best, runner

    def _plain(self, ip: str) -> bool:
        """One Service announces ip, with externalTrafficPolicy Cluster: its nodes are all candidates."""
        keys = self._ip_services.get(ip, ())
        return len(keys) == 1 and not self._services[next(iter(keys))].local

    def _shared_local(self, ip: str) -> bool:
        keys = self._ip_services.get(ip, ())
        return len(keys) > 1 and any(self._services[k].local for k in keys)

    # -- output ---------------------------------------------------------------------------------

    def flush(self) -> dict[str, Choice | None]:
        """Recompute what changed; returns ip -> its new Choice (None: the IP is gone) for every IP
        whose owner, reason or Services changed."""
        dirty, orphaned = self._dirty, self._orphaned - self._dirty
        self._dirty, self._orphaned = set(), set()
        changed: dict[str, Choice | None] = dict(self._joined)  # the orphaned or dirty may change them again
        self._joined = {}
        dirty |= self._inherit(orphaned, changed)
        for ip in dirty:
            new, best, runner = self._compute(ip)
            old = self.choices.get(ip)
            self._unranked.discard(ip)
            if new != old:
                self._record(ip, old, new, best, runner)
                changed[ip] = new
            else:
                self._set_ranks(ip, best, runner)  # same owner, same score: the runner-up may differ
        self.recomputed += len(dirty)
        return changed

    def _inherit(self, orphaned: set[str], changed: dict[str, Choice | None]) -> set[str]:
        """Hand each orphaned IP to its runner-up without computing it, in bulk per (old owner,
        heir): this is a takeover's path, kept lean. An owner that came back before this flush
        keeps its IP. Adds the new Choices to changed; returns the IPs to compute instead (the
        runner-up unknown, gone, or no longer allowed there)."""
        compute: set[str] = set()
        moves: dict[tuple[str, str], set[str]] = {}
        choices, best_of, runner_of, unranked = self.choices, self._best, self._runner_up, self._unranked
        candidates, allowed = self._candidates, self._allowed  # allowed may differ since it was ranked
        for ip in orphaned:
            old = choices.get(ip)
            if old is None or old.owner is None or ip in unranked:
                compute.add(ip)
                continue
            only = allowed(ip) if allowed is not None else None
            if old.owner in candidates and (only is None or old.owner in only):
                continue  # back before this flush
            heir = runner_of.get(ip)
            if heir is None or heir[1] not in candidates or (only is not None and heir[1] not in only):
                compute.add(ip)
                continue
            choices[ip] = changed[ip] = Choice(ip, heir[1], Why.OWNED, old.services)
            best_of[ip] = heir
            moves.setdefault((old.owner, heir[1]), set()).add(ip)
        for (was, heir_node), ips in moves.items():
            self._transfer(ips, was, heir_node)
            for ip in ips:  # the heir was their runner-up; who is next is unknown until computed
                del runner_of[ip]
            self._drop_standby(heir_node, ips)
            unranked |= ips
        return compute

    def _compute(self, ip: str) -> tuple[Choice | None, Ranked | None, Ranked | None]:
        keys = self._ip_services.get(ip)
        if not keys:
            return None, None, None
        views = [self._services[k] for k in keys]
        return choose_ip_ranked(ip, views, self._endpoints, restrict(self._candidates, self._allowed, ip))

    def _record(self, ip: str, old: Choice | None, new: Choice | None, best: Ranked | None,
                runner: Ranked | None) -> None:
        old_owner = old.owner if old is not None else None
        new_owner = new.owner if new is not None else None
        if old_owner != new_owner:
            self._transfer((ip,), old_owner, new_owner)
        self._set_ranks(ip, best, runner)
        if new is None:
            self.choices.pop(ip, None)
            self.previous.pop(ip, None)
        else:
            self.choices[ip] = new

    def _transfer(self, ips: Collection[str], was: str | None, now: str | None) -> None:
        """ips, owned by `was`, are owned by `now` (None: nobody) from here on."""
        self.previous.update(dict.fromkeys(ips, was))
        if was is not None:
            self._owned_frozen.pop(was, None)
            owned = self.by_owner[was]
            owned.difference_update(ips)
            if not owned:
                del self.by_owner[was]
        if now is not None:
            self._owned_frozen.pop(now, None)
            self.by_owner.setdefault(now, set()).update(ips)

    def _set_ranks(self, ip: str, best: Ranked | None, runner: Ranked | None) -> None:
        if best is None:
            self._best.pop(ip, None)
        else:
            self._best[ip] = best
        self._set_runner_up(ip, runner)

    def _set_runner_up(self, ip: str, runner: Ranked | None) -> None:
        old = self._runner_up.pop(ip, None) if runner is None else self._runner_up.get(ip)
        if runner is not None:
            self._runner_up[ip] = runner
        old_node, new_node = old[1] if old else None, runner[1] if runner else None
        if old_node == new_node:
            return
        if old_node is not None:
            self._drop_standby(old_node, (ip,))
        if new_node is not None:
            self._standby_frozen.pop(new_node, None)
            self.by_runner_up.setdefault(new_node, set()).add(ip)

    def _drop_standby(self, node: str, ips: Collection[str]) -> None:
        self._standby_frozen.pop(node, None)
        standby = self.by_runner_up[node]
        standby.difference_update(ips)
        if not standby:
            del self.by_runner_up[node]

    def owned_by(self, node: str) -> frozenset[str]:
        """The IPs node owns (the same object until they change: the sync loop asks on every pass)."""
        frozen = self._owned_frozen.get(node)
        if frozen is None:
            frozen = self._owned_frozen[node] = frozenset(self.by_owner.get(node, ()))
        return frozen

    def standby_of(self, node: str) -> frozenset[str]:
        """The IPs node inherits if their owner alone leaves the candidates (known runner-ups only:
        a hint for preparing a takeover, never a decision; the same object until they change)."""
        frozen = self._standby_frozen.get(node)
        if frozen is None:
            frozen = self._standby_frozen[node] = frozenset(self.by_runner_up.get(node, ()))
        return frozen

    def desired(self) -> Mapping[str, str | None]:
        """ip -> owner for every IP (a copy: for logs and tests, O(IPs))."""
        return {ip: c.owner for ip, c in self.choices.items()}
