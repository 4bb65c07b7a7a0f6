"""The lab's kube-proxy: make this node accept traffic for LoadBalancer IPs.

Where it sits: kubelet.py starts `Proxy`, which watches Services and EndpointSlices and,
after every change, computes with the pure `wanted()` which LB IPs this node accepts and
which TCP relays it runs, then applies that (addresses on the dummy `kube-lb0`, relays in
kubelet/relay.py).  Pods share the node's network namespace, so a local endpoint already
listens on the node; an LB IP on kube-lb0 is enough for the kernel to deliver to it.

Rules, per Service of type LoadBalancer and per ingress IP (status.loadBalancer.ingress[].ip):
- a ready endpoint on THIS node: the IP goes on kube-lb0; a Service port that differs from
  its target port gets a relay LBIP:port -> 127.0.0.1 (or ::1):targetPort.  Local endpoints
  are preferred over remote ones (real kube-proxy would spread over all of them).
- externalTrafficPolicy Cluster (the default) and ready endpoints only on OTHER nodes: the
  IP goes on kube-lb0 too and a relay forwards LBIP:port -> endpoint address:targetPort over
  the LAN, as kube-proxy would (the client's source address is lost, as with Cluster).
- externalTrafficPolicy Local without a local ready endpoint, or no endpoints: the IP is
  not accepted here.
Only TCP ports are served.  The kernel never answers ARP/NDP for these IPs: the node netns
has arp_ignore=1/arp_announce=2 (checked here too) and IPv6 answers neighbour solicitations
only for addresses of the receiving interface, which kube-lb0 is not.  Who owns an IP on
the LAN is the speaker's business alone.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client

from .kubelet import api, relay

log = logging.getLogger("kubelet.proxy")

DEVICE = "kube-lb0"
RESYNC_SECONDS = 10.0
COALESCE_SECONDS = 0.2
PASS_SHARE = 0.05  # a pass over every Service waits so that passes take at most this share of a core
SERVICE_LABEL = "kubernetes.io/service-name"

Relays = dict[relay.Listen, tuple[relay.Target, ...]]  # (LB IP, port) -> backends


def _is_v6(ip: str) -> bool:
    return ":" in ip


def _endpoints(slices: Iterable[dict[str, Any]], port_name: str) -> list[tuple[str, str, int]]:
    """Ready endpoints as (address, nodeName, port) for the named Service port."""
    out = []
    for sl in slices:
        numbers = [p.get("port") for p in sl.get("ports") or [] if (p.get("name") or "") == port_name
                   and p.get("protocol", "TCP") == "TCP" and p.get("port")]
        if not numbers:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue  # nil means ready
            for address in ep.get("addresses") or []:
                out.append((address, ep.get("nodeName") or "", int(numbers[0])))
    return out


def _service_relays(svc: dict[str, Any], slices: list[dict[str, Any]], node: str,
                    ips: list[str]) -> tuple[set[str], Relays]:
    accepted: set[str] = set()
    relays: Relays = {}
    cluster = (svc["spec"].get("externalTrafficPolicy") or "Cluster") == "Cluster"
    for port in svc["spec"].get("ports") or []:
        if port.get("protocol", "TCP") != "TCP":
            continue
        eps = _endpoints(slices, port.get("name") or "")
        for ip in ips:
            same_family = [e for e in eps if _is_v6(e[0]) == _is_v6(ip)] or eps
            local = [e for e in same_family if e[1] == node]
            remote = [e for e in same_family if e[1] != node]
            if local:
                accepted.add(ip)
                target = local[0][2]
                if target != port["port"]:
                    relays[(ip, port["port"])] = (("::1" if _is_v6(ip) else "127.0.0.1", target),)
            elif cluster and remote:
                accepted.add(ip)
                relays[(ip, port["port"])] = tuple(sorted({(addr, p) for addr, _, p in remote}))
    return accepted, relays


def wanted(services: list[dict[str, Any]], slices: list[dict[str, Any]],
           node: str) -> tuple[set[str], Relays]:
    """(LB IPs this node accepts, relays it runs) for the given Services and EndpointSlices."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (ns, service) -> slices
    for sl in slices:
        name = (sl["metadata"].get("labels") or {}).get(SERVICE_LABEL)
        if name:
            by_service.setdefault((sl["metadata"]["namespace"], name), []).append(sl)
    accepted: set[str] = set()
    relays: Relays = {}
    for svc in services:
        if svc.get("spec", {}).get("type") != "LoadBalancer":
            continue
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [_canonical(i["ip"]) for i in ingress if i.get("ip")]
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        ips_ok, svc_relays = _service_relays(svc, by_service.get(key, []), node, [i for i in ips if i])
        accepted |= ips_ok
        relays.update(svc_relays)
    return accepted, relays


def _canonical(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ""


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def ensure_device() -> None:
    """kube-lb0 exists and is up; ARP stays quiet for addresses that are not on eth0."""
    try:
        _ip("link", "show", DEVICE)
    except OSError:
        try:
            _ip("link", "add", DEVICE, "type", "dummy")
        except OSError:  # a kernel without the dummy driver: ifb is just as NOARP
            _ip("link", "add", DEVICE, "type", "ifb")
        log.info("created %s", DEVICE)
    _ip("link", "set", DEVICE, "up")
    for name, value in (("arp_ignore", "1"), ("arp_announce", "2")):
        path = f"/proc/sys/net/ipv4/conf/all/{name}"
        with open(path, encoding="ascii") as f:
            current = f.read().strip()
        if int(current) < int(value):
            log.warning("net.ipv4.conf.all.%s was %s; setting %s so only speakers answer ARP",
                        name, current, value)
            with open(path, "w", encoding="ascii") as f:
                f.write(value)


def current_addresses() -> set[str]:
    data = json.loads(_ip("-j", "addr", "show", "dev", DEVICE) or "[]")
    return {a["local"] for link in data for a in link.get("addr_info", []) if a.get("scope") != "link"}


def apply_addresses(want: set[str]) -> None:
    have = current_addresses()
    for ip in sorted(want - have):
        if _is_v6(ip):
            _ip("-6", "addr", "add", f"{ip}/128", "dev", DEVICE, "nodad")
        else:
            _ip("addr", "add", f"{ip}/32", "dev", DEVICE)
        log.info("accepting %s on %s", ip, DEVICE)
    for ip in sorted(have - want):
        _ip("addr", "del", f"{ip}/{128 if _is_v6(ip) else 32}", "dev", DEVICE)
        log.info("no longer accepting %s", ip)


class Proxy:
    """Watches Services + EndpointSlices; reconciles on change and every RESYNC_SECONDS."""

    def __init__(self, node: str, api_client: client.ApiClient) -> None:
        self.node = node
        self._wake = threading.Event()
        self._stop = threading.Event()
        core, discovery = client.CoreV1Api(api_client), client.DiscoveryV1Api(api_client)
        self._services = api.Informer("services", core.list_service_for_all_namespaces, self._wake.set)
        self._slices = api.Informer("endpointslices", discovery.list_endpoint_slice_for_all_namespaces,
                                    self._wake.set)
        self._relays = relay.RelaySet()
        self._applied: tuple[set[str], Relays] | None = None  # last state written to the kernel
        self._checked = 0.0
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    def start(self) -> None:
        try:
            ensure_device()
        except OSError as exc:  # retried on every reconcile
            log.warning("proxy: %s", exc)
        self._relays.start()
        self._services.start()
        self._slices.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        coalesce = COALESCE_SECONDS
        while not self._stop.is_set():
            if self._wake.wait(RESYNC_SECONDS):
                self._stop.wait(coalesce)  # one pass for a burst of watch events
            self._wake.clear()
            if not (self._services.synced.is_set() and self._slices.synced.is_set()):
                continue
            began = time.monotonic()
            try:
                self._reconcile()
            except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
                log.warning("proxy: %s", exc)
            except Exception:  # the proxy loop must outlive any bug in one pass
                log.exception("proxy: unexpected error; retrying")
            # A pass is O(Services): with thousands churning (make bench-scale), passes every 0.2 s
            # would take the API server's CPU on a 2-core lab; kube-proxy bounds its syncs the same way.
            coalesce = max(COALESCE_SECONDS, (time.monotonic() - began) * (1 / PASS_SHARE - 1))

    def _reconcile(self) -> None:
        ips, relays = wanted(self._services.snapshot(), self._slices.snapshot(), self.node)
        now = time.monotonic()
        if (ips, relays) == self._applied and now - self._checked < RESYNC_SECONDS:
            return  # nothing new; the kernel state is re-checked every RESYNC_SECONDS anyway
        ensure_device()
        apply_addresses(ips)
        self._relays.apply(relays)
        self._applied, self._checked = (ips, relays), now
