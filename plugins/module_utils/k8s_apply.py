# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin Kubernetes layer for the l2lb modules, on the official `kubernetes` client.

Place in the flow: module -> render -> **k8s_apply (here)** -> kube-apiserver.
- Writes are server-side apply with field manager `l2lb-ansible`, conflicts forced.
- Check mode is decided once, here: every write carries dryRun=All, so the server validates and
  defaults the object exactly as it would on a real run, and nothing is stored.
- `changed` comes from data: the live object against the one the server returns, ignoring
  bookkeeping fields. before/after are returned for the caller to show in diff mode.
Errors are typed (KubeError); only a module's main() turns them into fail_json.
It does not retry, and a check-mode apply into a namespace that does not exist yet is predicted
(the server cannot dry-run it) rather than validated.
"""

from __future__ import annotations

import copy
import dataclasses
import typing as t

try:
    from kubernetes import config as kube_config
    from kubernetes import dynamic
    from kubernetes.client import exceptions as client_exceptions
    from kubernetes.dynamic import exceptions as dynamic_exceptions
    from urllib3 import exceptions as urllib3_exceptions

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as import_error:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = import_error

FIELD_MANAGER = "l2lb-ansible"
IGNORED_METADATA = ("resourceVersion", "generation", "managedFields", "creationTimestamp", "uid")


class KubeError(Exception):
    """A Kubernetes call failed; the message names the object and the server's reason."""


@dataclasses.dataclass(frozen=True)
class Result:
    """Outcome of one apply or delete. before/after are comparable (bookkeeping removed)."""

    ref: str
    changed: bool
    before: dict[str, t.Any] | None
    after: dict[str, t.Any] | None
    key: tuple[str, str, str, str | None] | None = None  # apiVersion, kind, name, namespace


def comparable(obj: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    """Copy without fields that change on every write or that apply never sets (status)."""
    if obj is None:
        return None
    clean = copy.deepcopy(dict(obj))
    clean.pop("status", None)
    meta = clean.get("metadata", {})
    for key in IGNORED_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    # Bumped by the workload controllers, not by our apply (a template change shows anyway).
    annotations.pop("deployment.kubernetes.io/revision", None)
    annotations.pop("deprecated.daemonset.template.generation", None)
    if not annotations:
        meta.pop("annotations", None)
    return clean


def _ref(api_version: str, kind: str, name: str, namespace: str | None) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _api_errors() -> tuple[type[Exception], ...]:
    # HTTP errors from the server, and transport errors (refused, TLS, timeouts) from urllib3.
    return (client_exceptions.ApiException, urllib3_exceptions.HTTPError)


def _describe(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    status = getattr(error, "status", None)
    return f"HTTP {status}: {body or error}" if status else str(error)


class Kube:
    """One API connection. Constructing it loads the kubeconfig and discovers the API."""

    def __init__(self, kubeconfig: str | None, context: str | None, check_mode: bool) -> None:
        if not HAS_KUBERNETES:
            raise KubeError(f"the kubernetes Python client is required: {KUBERNETES_IMPORT_ERROR}")
        self.dry_run = "All" if check_mode else None
        try:
            api = kube_config.new_client_from_config(config_file=kubeconfig, context=context)
            self.client = dynamic.DynamicClient(api)
        except (kube_config.ConfigException, OSError) as error:
            raise KubeError(f"cannot load kubeconfig {kubeconfig or '(default)'}: {error}") from error
        except _api_errors() as error:
            raise KubeError(f"cannot reach the API server: {_describe(error)}") from error

    def _resource(self, api_version: str, kind: str) -> t.Any:
        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except dynamic_exceptions.ResourceNotFoundError as error:
            raise KubeError(f"the API server does not serve {api_version} {kind}") from error

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> dict[str, t.Any] | None:
        resource = self._resource(api_version, kind)
        try:
            return resource.get(name=name, namespace=namespace).to_dict()
        except dynamic_exceptions.NotFoundError:
            return None
        except _api_errors() as error:
            ref = _ref(api_version, kind, name, namespace)
            raise KubeError(f"cannot read {ref}: {_describe(error)}") from error

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, t.Any]]:
        resource = self._resource(api_version, kind)
        try:
            found = resource.get(namespace=namespace, label_selector=label_selector,
                                 field_selector=field_selector)
        except dynamic_exceptions.NotFoundError:
            return []
        except _api_errors() as error:
            where = namespace or "all namespaces"
            raise KubeError(f"cannot list {kind} in {where}: {_describe(error)}") from error
        return list(found.to_dict().get("items", []))

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the API server knows this kind at this version."""
        try:
            self.client.resources.get(api_version=api_version, kind=kind)
        except dynamic_exceptions.ResourceNotFoundError:
            return False
        return True

    def list_namespace_contents(self, namespace: str) -> list[dict[str, t.Any]]:
        """Every object in the namespace, of every listable kind (preferred versions only)."""
        found: list[dict[str, t.Any]] = []
        for resource in _listable(self.client.resources):
            try:
                listed = resource.get(namespace=namespace).to_dict()
            except dynamic_exceptions.NotFoundError:
                continue
            except _api_errors() as error:
                raise KubeError(f"cannot list {resource.kind} in {namespace}: {_describe(error)}") from error
            for item in listed.get("items") or []:
                found.append({**item, "apiVersion": resource.group_version, "kind": resource.kind})
        return found

    def apply(self, manifest: t.Mapping[str, t.Any], dry_run: bool = False) -> Result:
        """Server-side apply; a server dry run in check mode or when asked (validation before a
        real run). changed = live differs from result."""
        dry = "All" if dry_run else self.dry_run
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace")
        ref = _ref(api_version, kind, name, namespace)
        live = self.get(api_version, kind, name, namespace)
        resource = self._resource(api_version, kind)
        try:
            returned = resource.server_side_apply(
                body=dict(manifest), name=name, namespace=namespace,
                field_manager=FIELD_MANAGER, force_conflicts=True, dry_run=dry,
            ).to_dict()
        except dynamic_exceptions.NotFoundError as error:
            if dry and namespace and self.get("v1", "Namespace", namespace) is None:
                # The namespace would be created earlier in this same run; predict the create.
                return Result(ref, True, None, comparable(manifest))
            raise KubeError(f"cannot apply {ref}: {_describe(error)}") from error
        except _api_errors() as error:
            raise KubeError(f"cannot apply {ref}: {_describe(error)}") from error
        before, after = comparable(live), comparable(returned)
        return Result(ref, before != after, before, after)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Result:
        """Delete if present (dry run in check mode); changed only if it existed."""
        ref = _ref(api_version, kind, name, namespace)
        live = self.get(api_version, kind, name, namespace)
        if live is None:
            return Result(ref, False, None, None)
        resource = self._resource(api_version, kind)
        try:
            resource.delete(name=name, namespace=namespace, dry_run=self.dry_run,
                            propagation_policy="Background")
        except dynamic_exceptions.NotFoundError:
            return Result(ref, False, None, None)
        except _api_errors() as error:
            raise KubeError(f"cannot delete {ref}: {_describe(error)}") from error
        return Result(ref, True, comparable(live), None, (api_version, kind, name, namespace))


def _listable(resources: t.Iterable[t.Any]) -> list[t.Any]:
    """Namespaced, listable top-level resources of each group's preferred version."""
    chosen: dict[tuple[str, str], t.Any] = {}
    for item in resources:
        for resource in item if isinstance(item, list) else [item]:
            if (getattr(resource, "preferred", False) and getattr(resource, "namespaced", False)
                    and "list" in (getattr(resource, "verbs", None) or []) and "/" not in resource.name):
                chosen.setdefault((resource.group, resource.name), resource)
    return list(chosen.values())


def diff(results: t.Iterable[Result], dump: t.Callable[[t.Any], str], check_mode: bool) -> dict[str, str]:
    """Ansible's diff dict from the changed results: one YAML stream before, one after."""
    changed = [r for r in results if r.changed]
    before = [r.before for r in changed if r.before is not None]
    after = [r.after for r in changed if r.after is not None]
    return {
        "before": "".join(dump(obj) for obj in before),
        "after": "".join(dump(obj) for obj in after),
        "before_header": "live",
        "after_header": "server dry run" if check_mode else "applied",
    }
