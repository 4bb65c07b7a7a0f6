# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Refuse bad role variables before anything in the cluster changes.

Place in the flow: module params -> render.Settings -> **checks (here)** -> render -> k8s_apply.
Pure. Timings are validated by the agent's own code (l2lb_timing is a symlink to
l2lb_agent/timing.py), so a value the agent would refuse at start never reaches a Pod; the other
flags are checked here the way the agent's cli checks them, and tests/unit/test_deploy_settings.py
feeds every rendered env through the agent's real cli to prove both agree. Kubernetes names and
quantities get the API server's syntax rules, so a typo fails here rather than half-way through
an apply. It does not ask the cluster anything (the kube-proxy preflight is preflight.py).
"""

from __future__ import annotations

import ipaddress
import re
import typing as t

from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_timing, render

# Two rules the agent's cli (not importable here: it needs prometheus_client) adds to timing.py's;
# tests/unit/test_deploy_settings.py keeps both equal to l2lb_agent.cli's.
CONTROLLER_LEASE_DURATION = 6.0  # the controller's Lease when lease_duration is unset
MIN_RENEW_INTERVAL = 0.2  # a shorter renew interval floods the API server
MAX_FLAG_SECONDS = 3600.0  # the agent's cli refuses seconds outside (0, 3600)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
QUALIFIED_NAME = re.compile(rf"({DNS_SUBDOMAIN.pattern}/)?{_NAME}")
LABEL_VALUE = re.compile(rf"({_NAME})?")
QUANTITY = re.compile(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?")
INTERFACE = re.compile(r"[^\s/,:]{1,15}")
RESOURCE_KEYS = ("requests", "limits")
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


class SettingsError(ValueError):
    """A role variable is unusable; the message names the variable and its value."""


def _bad(field: str, value: t.Any, why: str) -> SettingsError:
    return SettingsError(f"{field} (l2lb_{field}) = {value!r}: {why}")


def validate(settings: render.Settings) -> None:
    """Raise SettingsError for the first unusable value; return None when all are usable."""
    _names(settings)
    _timings(settings)
    _hosts(settings)
    _scheduling(settings)
    for field in ("controller_resources", "speaker_resources"):
        _resources(field, getattr(settings, field))


def _names(s: render.Settings) -> None:
    if not DNS_LABEL.fullmatch(s.namespace):
        raise _bad("namespace", s.namespace, "not a Kubernetes namespace name (lower-case DNS label)")
    if not s.image or any(ch.isspace() for ch in s.image):
        raise _bad("image", s.image, "an image reference has no spaces and is not empty")
    for name in s.image_pull_secrets:
        if not DNS_SUBDOMAIN.fullmatch(name):
            raise _bad("image_pull_secrets", name, "not a Secret name (lower-case DNS subdomain)")
    for field in ("controller_priority_class", "speaker_priority_class"):
        value = getattr(s, field)
        if not DNS_SUBDOMAIN.fullmatch(value):
            raise _bad(field, value, "not a PriorityClass name (lower-case DNS subdomain)")
    if not QUALIFIED_NAME.fullmatch(s.loadbalancer_class) or "/" not in s.loadbalancer_class:
        raise _bad("loadbalancer_class", s.loadbalancer_class,
                   "a loadBalancerClass is a label-style name with a prefix, e.g. l2lb.io/layer2")
    if s.log_level not in render.LOG_LEVELS:
        raise _bad("log_level", s.log_level, f"expected one of {', '.join(render.LOG_LEVELS)}")
    for name in s.interfaces:
        if not INTERFACE.fullmatch(name) or name in (".", ".."):
            raise _bad("interfaces", name,
                       "not a Linux interface name (1-15 characters, no space, '/', ',' or ':')")
    if s.controller_replicas < 0:
        raise _bad("controller_replicas", s.controller_replicas, "must be >= 0")
    if not 0.1 <= s.controller_api_qps <= 100000:  # the agent's --api-qps range
        raise _bad("controller_api_qps", s.controller_api_qps, "must be 0.1-100000 writes per second")


def _seconds(field: str, value: float | None) -> None:
    if value is not None and not 0 < value < MAX_FLAG_SECONDS:
        raise _bad(field, value, f"must be more than 0 and less than {MAX_FLAG_SECONDS:g} seconds")


def _timings(s: render.Settings) -> None:
    """The agent's own checks: LeaseTimings for the controller, LanTimings for the speaker."""
    for field in ("lease_duration", "renew_interval", "heartbeat_interval", "dead_after", "handover_delay"):
        _seconds(field, getattr(s, field))
    if s.renew_interval is not None and s.renew_interval < MIN_RENEW_INTERVAL:
        raise _bad("renew_interval", s.renew_interval,
                   f"must be at least {MIN_RENEW_INTERVAL:g} s: a shorter interval floods the API server")
    lease = CONTROLLER_LEASE_DURATION if s.lease_duration is None else s.lease_duration
    try:
        l2lb_timing.from_options(lease, s.renew_interval)
    except l2lb_timing.TimingError as error:
        raise _timing_error(error, s, ("lease_duration", "renew_interval")) from None
    given = {f: getattr(s, f) for f in ("heartbeat_interval", "dead_after", "handover_delay")}
    try:
        l2lb_timing.LanTimings(**{f: v for f, v in given.items() if v is not None})
    except l2lb_timing.TimingError as error:
        raise _timing_error(error, s, tuple(given)) from None


def _timing_error(error: Exception, s: render.Settings, fields: tuple[str, ...]) -> SettingsError:
    """The agent names the field it refused; name the role variable too, with what was given."""
    text = str(error)
    named = next((f for f in fields if text.startswith(f)), None)
    given = ", ".join(f"l2lb_{f}={getattr(s, f)!r}" for f in fields if getattr(s, f) is not None)
    where = f"l2lb_{named}" if named else "timings"
    return SettingsError(f"{where}: {text} (given: {given or 'defaults'})")


def _hosts(s: render.Settings) -> None:
    for field in ("controller_metrics_host", "speaker_metrics_host"):
        value = getattr(s, field)
        if not value:
            continue  # the Pod's IP, from the downward API
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise _bad(field, value, "expected an IP address, or empty for the Pod's IP") from None
        if field == "controller_metrics_host" and address.is_loopback:
            raise _bad(field, value, "the controller is not on the host network: the kubelet's probes "
                       "cannot reach its loopback (leave empty for the Pod's IP)")


def _scheduling(s: render.Settings) -> None:
    for key, value in s.speaker_node_selector.items():
        if not QUALIFIED_NAME.fullmatch(str(key)) or not LABEL_VALUE.fullmatch(str(value)):
            raise _bad("speaker_node_selector", {key: value}, "not a valid label key and value")
    for item in s.tolerations:
        unknown = set(item) - TOLERATION_KEYS
        if unknown:
            raise _bad("tolerations", dict(item), f"unknown key(s) {', '.join(sorted(unknown))}")
        if item.get("operator", "Equal") not in TOLERATION_OPERATORS:
            raise _bad("tolerations", dict(item), "operator must be Exists or Equal")
        if item.get("effect", "") not in TOLERATION_EFFECTS:
            raise _bad("tolerations", dict(item), "effect must be NoSchedule, PreferNoSchedule or NoExecute")
        if item.get("operator", "Equal") == "Equal" and not item.get("key"):
            raise _bad("tolerations", dict(item), "operator Equal needs a key")


def _resources(field: str, value: t.Mapping[str, t.Any]) -> None:
    if not isinstance(value, t.Mapping):
        raise _bad(field, value, "expected a dict with requests and/or limits")
    for section, amounts in value.items():
        if section not in RESOURCE_KEYS or not isinstance(amounts, t.Mapping):
            raise _bad(field, {section: amounts}, "only requests and limits, each a dict of quantities")
        for resource, amount in amounts.items():
            if not QUANTITY.fullmatch(str(amount)):
                raise _bad(field, {section: {resource: amount}},
                           "not a Kubernetes quantity (e.g. 100m, 64Mi)")
