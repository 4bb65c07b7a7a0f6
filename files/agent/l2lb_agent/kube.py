"""A thin Kubernetes REST client: plain dicts in, plain dicts out, over `transport` (HTTP/1.1).

Adapter ring. The controller and the speaker reach the API server only through this module.
It is deliberately small: the official client deserializes into model objects, which costs
time and memory at 1,000 Services; here a Service is the JSON dict the server sent.

    client = KubeClient.from_config(kubeconfig=None)      # resolution order: see kubeconfig.py
    svc = client.get(SERVICES, "nginx", namespace="default")
    items, rv = client.list(SERVICES)                    # all namespaces
    for kind, obj in client.watch(SERVICES, resource_version=rv):  # ADDED/MODIFIED/DELETED/BOOKMARK
        ...
    client.patch_status(SERVICES, "nginx", {"status": {...}}, namespace="default")

Guarantees: thread-safe (one pool of kept-alive connections); every request has a connect and a read
timeout, so a blackholed API server raises `ApiUnavailable` instead of hanging; errors are typed
(`NotFound`, `Conflict`/`AlreadyExists`, `Gone`, `Forbidden`, `ApiError` with status and message).
Not guaranteed: retries. Callers decide; `Informer` (list, then watch; after an error it resumes
the watch from the last resourceVersion it saw, kept fresh by bookmarks, and lists again only
on Gone) keeps a local cache and calls a handler per change.
`request_count` counts every HTTP request sent (the benchmark reads it).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import socket
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from . import kubeconfig, transport

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# Server-side watch timeout. The read timeout is this plus WATCH_READ_MARGIN, so a watch on a
# blackholed API server ends within ~75 s; a normal end costs one request (resume, no relist).
WATCH_TIMEOUT_SECONDS = 60
WATCH_READ_MARGIN = 15.0
MAX_WATCH_EVENT = 64 << 20  # bytes of one watch event line (etcd refuses objects past ~1.5 MiB)

JSON = "application/json"
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class Resource:
    """A REST resource: group/version ("v1" for core) and plural name."""

    api: str
    plural: str
    kind: str

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if self.api == "v1" else f"/apis/{self.api}"
        if namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        if sub:
            base += f"/{sub}"
        return base


SERVICES = Resource("v1", "services", "Service")
CONFIGMAPS = Resource("v1", "configmaps", "ConfigMap")
NODES = Resource("v1", "nodes", "Node")
PODS = Resource("v1", "pods", "Pod")
EVENTS = Resource("v1", "events", "Event")
NAMESPACES = Resource("v1", "namespaces", "Namespace")
ENDPOINTSLICES = Resource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice")
LEASES = Resource("coordination.k8s.io/v1", "leases", "Lease")


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str, reason: str = "", body: Mapping[str, Any] | None = None):
        super().__init__(f"HTTP {status} {reason}: {message}" if status else message)
        self.status = status
        self.message = message
        self.reason = reason
        self.body = dict(body or {})


class ApiUnavailable(ApiError):
    """Connection refused, timed out or reset: nothing is known about the request's effect."""


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: stale resourceVersion on update, or (subclass AlreadyExists) name taken on create."""


class AlreadyExists(Conflict):
    pass


class Forbidden(ApiError):
    pass


class Gone(ApiError):
    """410: the resourceVersion is too old; list again, then watch from the new one."""


def _error(status: int, body: Mapping[str, Any], text: str) -> ApiError:
    message = str(body.get("message") or text[:300] or "no message")
    reason = str(body.get("reason") or "")
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, message, reason, body)
    cls = {404: NotFound, 409: Conflict, 410: Gone, 403: Forbidden}.get(status, ApiError)
    return cls(status, message, reason, body)


class KubeClient:
    """Thread-safe REST client. Construct with `from_config`; it starts nothing."""

    def __init__(self, config: kubeconfig.ClusterConfig, *, pool_size: int = 32,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> None:
        self.config = config
        self._read_timeout = read_timeout
        url = urlsplit(config.server)
        self._transport = transport.Transport(  # why not urllib3: see transport.py
            url.hostname or "", url.port or (443 if url.scheme == "https" else 80), config.ssl_context,
            connect_timeout=connect_timeout, max_idle=pool_size)
        self._counter = itertools.count()
        self._sent = 0

    @classmethod
    def from_config(cls, kubeconfig_path: str | None = None, context: str | None = None,
                    **kw: Any) -> KubeClient:
        return cls(kubeconfig.resolve(kubeconfig_path, context), **kw)

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (watches count once, when opened)."""
        return self._sent

    # -- low level ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": JSON, "User-Agent": "l2lb-agent"}
        token = self.config.token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _count(self) -> None:
        self._sent = next(self._counter) + 1

    @staticmethod
    def _target(path: str, query: Mapping[str, Any] | None) -> str:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return path

    def _stream(self, path: str, query: Mapping[str, Any], read_timeout: float) -> transport.Stream:
        """A GET whose body is read as it arrives (watches)."""
        self._count()
        try:
            return self._transport.stream(self._target(path, query), self._headers(), read_timeout)
        except (OSError, transport.ProtocolError) as exc:
            raise ApiUnavailable(0, f"GET {path}: {exc}") from exc

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str = JSON) -> dict[str, Any]:
        """One request; returns the decoded JSON body or raises a typed ApiError."""
        headers = self._headers()
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        self._count()
        try:
            resp = self._transport.request(method, self._target(path, query), headers, data,
                                           self._read_timeout)
        except (OSError, transport.ProtocolError) as exc:
            raise ApiUnavailable(0, f"{method} {path}: {exc}") from exc
        text = resp.body.decode("utf-8", "replace")
        try:
            doc = json.loads(text) if text else {}
        except ValueError:
            doc = {}
        if resp.status >= 400:
            raise _error(resp.status, doc if isinstance(doc, dict) else {}, text)
        return doc

    # -- verbs -------------------------------------------------------------------------------

    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.request("GET", res.path(namespace, name))

    def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None,
             each: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
             ) -> tuple[list[dict[str, Any]], str]:
        """All items (paged by 500) and the list's resourceVersion to watch from. ``each`` maps every
        item as its page arrives (None drops it), so a large list never sits whole in memory."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"labelSelector": label_selector, "fieldSelector": field_selector,
                                 "limit": 500}
        while True:
            doc = self.request("GET", res.path(namespace), query=query)
            page = doc.pop("items", None) or []
            if each is None:
                items.extend(page)
            else:
                items.extend(o for o in map(each, page) if o is not None)
            del page
            meta = doc.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            query["continue"] = meta["continue"]

    def watch(self, res: Resource, namespace: str | None = None, *, resource_version: str | None = None,
              timeout_seconds: int = WATCH_TIMEOUT_SECONDS, label_selector: str | None = None,
              field_selector: str | None = None, bookmarks: bool = True) -> WatchStream:
        """Open a watch. Iterate it for (type, object); `close()` it from any thread to stop."""
        query = {"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds,
                 "allowWatchBookmarks": "true" if bookmarks else None,
                 "labelSelector": label_selector, "fieldSelector": field_selector}
        resp = self._stream(res.path(namespace), query, timeout_seconds + WATCH_READ_MARGIN)
        if resp.status >= 400:
            try:
                text = resp.rest().decode("utf-8", "replace")
            except (OSError, transport.ProtocolError) as exc:
                raise ApiUnavailable(0, f"watch {res.plural}: HTTP {resp.status}, then {exc}") from exc
            try:
                doc = json.loads(text)
            except ValueError:
                doc = {}
            raise _error(resp.status, doc if isinstance(doc, dict) else {}, text)
        return WatchStream(resp)

    def create(self, res: Resource, body: Mapping[str, Any], namespace: str | None = None,
               *, dry_run: bool = False) -> dict[str, Any]:
        return self.request("POST", res.path(namespace), body=body, query=_dry(dry_run))

    def replace(self, res: Resource, name: str, body: Mapping[str, Any], namespace: str | None = None,
                *, subresource: str | None = None) -> dict[str, Any]:
        """PUT; carries body's metadata.resourceVersion, so a stale write raises Conflict."""
        return self.request("PUT", res.path(namespace, name, subresource), body=body)

    def patch(self, res: Resource, name: str, body: Any, namespace: str | None = None, *,
              patch_type: str = "merge", field_manager: str | None = None, force: bool = False,
              subresource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """PATCH with patch_type merge | strategic | json | apply (server-side apply)."""
        if patch_type not in PATCH_TYPES:
            raise ValueError(f"patch_type {patch_type!r}: expected one of {sorted(PATCH_TYPES)}")
        if patch_type == "apply" and not field_manager:
            raise ValueError("patch_type 'apply' needs a field_manager")
        query = {"fieldManager": field_manager, "force": "true" if force else None, **_dry(dry_run)}
        return self.request("PATCH", res.path(namespace, name, subresource), query=query, body=body,
                            content_type=PATCH_TYPES[patch_type])

    def patch_status(self, res: Resource, name: str, body: Any, namespace: str | None = None,
                     **kw: Any) -> dict[str, Any]:
        return self.patch(res, name, body, namespace, subresource="status", **kw)

    def delete(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.request("DELETE", res.path(namespace, name))

    def create_event(self, namespace: str, involved: Mapping[str, Any], type_: str, reason: str,
                     message: str, component: str) -> dict[str, Any]:
        """A core/v1 Event about `involved` (a full object dict); shown by `kubectl describe`."""
        return self.create(EVENTS, event_body(involved, type_, reason, message, component), namespace)


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dryRun": "All"} if dry_run else {}


def event_body(involved: Mapping[str, Any], type_: str, reason: str, message: str,
               component: str) -> dict[str, Any]:
    meta = involved.get("metadata") or {}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'unknown')}.{suffix}", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"), "kind": involved.get("kind", ""),
            "namespace": meta.get("namespace"), "name": meta.get("name"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component, "host": socket.gethostname()},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class WatchStream:
    """Iterator of (type, object) over one open watch response. Raises Gone on a 410 ERROR event."""

    def __init__(self, resp: transport.Stream) -> None:
        self._resp = resp
        self._closed = False

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        partial = b""  # the start of an event whose end has not arrived yet
        try:
            for chunk in self._resp.chunks():
                lines = (partial + chunk).split(b"\n") if partial else chunk.split(b"\n")
                partial = lines.pop()
                if len(partial) > MAX_WATCH_EVENT:
                    raise ApiUnavailable(0, f"a watch event longer than {MAX_WATCH_EVENT} bytes")
                for line in lines:
                    if line.strip():
                        yield self._decode(line)
        except (OSError, transport.ProtocolError, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: reading a socket that close() just shut.
            if not self._closed:
                raise ApiUnavailable(0, f"watch stream broke: {exc}") from exc
        finally:
            self.close()

    @staticmethod
    def _decode(line: bytes) -> tuple[str, dict[str, Any]]:
        event = json.loads(line)
        kind, obj = event.get("type", ""), event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 500)
            raise _error(code, obj, json.dumps(obj)[:300])
        return kind, obj

    def close(self) -> None:
        """Stop the watch; safe from any thread and more than once."""
        if self._closed:
            return
        self._closed = True
        self._resp.close()


# -- informer ---------------------------------------------------------------------------------

RELIST_AFTER = 8  # failed watch resumes in a row before a full list (the version may be bad)

Handler = Callable[[str, "dict[str, Any] | None", "dict[str, Any] | None"], None]
"""handler(type, new, old): type is ADDED / MODIFIED / DELETED; new is None for DELETED."""
Projection = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def object_key(obj: Mapping[str, Any]) -> str:
    """Cache key: "namespace/name", or "name" for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Informer:
    """List, then watch one resource; keep `cache` (key -> object) and call `handler` per change.

    After an error (API blip, broken stream) it waits (backoff 0.5 s doubling to 30 s, reset once
    a watch delivers an event or bookmark) and resumes the watch from the last resourceVersion
    seen, which bookmarks keep recent: a blip costs one watch request, not a paged relist of
    everything (at 100 speakers x Services + EndpointSlices + Nodes that is the difference). Only
    Gone (410: the version was compacted away) or RELIST_AFTER failed resumes in a row bring a
    full list; it is diffed against the cache so the handler sees only real changes (DELETED for
    objects that vanished meanwhile). `lists` counts the full lists. `synced` is set after the
    first full list has been handled; `on_synced` (optional) is called after every list. Handlers run on the
    informer's own thread, one at a time; a handler exception is logged and does not stop it.
    Cached objects lack metadata.managedFields (dropped to save memory); treat them as read-only.
    ``project`` (optional) maps each object at ingest to the little its reader needs, or None to
    keep it out of the cache (it then counts as absent: a Service that stops being a LoadBalancer
    is DELETED for the handler). Projected objects must keep metadata name, namespace and
    resourceVersion. With a projection, a change that leaves the projection equal (a Node's
    heartbeat timestamps, say) updates the cache but calls no handler.
    The constructor starts nothing: call start() and stop().
    """

    def __init__(self, client: KubeClient, res: Resource, handler: Handler | None = None, *,
                 namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, on_synced: Callable[[], None] | None = None,
                 name: str | None = None, project: Projection | None = None) -> None:
        self._client, self._res, self._handler, self._on_synced = client, res, handler, on_synced
        self._project = project
        self._sel = {"label_selector": label_selector, "field_selector": field_selector}
        self._namespace = namespace
        self.name = name or f"informer-{res.plural}"
        self.cache: dict[str, dict[str, Any]] = {}  # key ("ns/name") -> last seen object
        self.synced = threading.Event()
        self.failing_since: float | None = None  # monotonic time the current failure streak began
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._rv = ""  # last resourceVersion seen (list, event or bookmark); "" = list first
        self._delay = 0.5  # seconds before the next attempt after a failure
        self.lists = 0  # full lists done

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def items(self) -> list[dict[str, Any]]:
        """A snapshot of the cached objects."""
        with self._lock:
            return list(self.cache.values())

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self.cache.get(key)

    def run(self) -> None:
        """The loop (blocking); start() runs it on a daemon thread."""
        self._delay, failed = 0.5, 0
        while not self._stop.is_set():
            try:
                if not self._rv or failed >= RELIST_AFTER:
                    self._rv = self._relist()
                    failed = 0
                self._watch()
            except Gone:
                log.info("%s: resourceVersion %s expired, listing again", self.name, self._rv)
                self._rv = ""
                continue
            except Exception as exc:  # whatever ends a watch: a dead loop would leave a stale cache
                if self._stop.is_set():
                    break
                failed += 1
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                what = f"resuming from resourceVersion {self._rv}" if self._rv else "listing again"
                if isinstance(exc, ApiError | ValueError):
                    log.warning("%s: %s; %s in %.1fs", self.name, exc, what, self._delay)
                else:
                    log.exception("%s: unexpected failure; %s in %.1fs", self.name, what, self._delay)
                if not isinstance(exc, ApiError):
                    self._rv = ""  # a bug or a garbled stream: the cache may be wrong, list again
                self._stop.wait(self._delay * random.uniform(0.8, 1.2))
                self._delay = min(self._delay * 2, 30.0)

    def _relist(self) -> str:
        items, rv = self._client.list(self._res, self._namespace, each=self._ingest, **self._sel)
        self.lists += 1
        fresh = {object_key(o): o for o in items}
        with self._lock:
            old = self.cache
            self.cache = fresh
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._call("ADDED", obj, None)
            elif _rv(prev) != _rv(obj) and not self._same(prev, obj):
                self._call("MODIFIED", obj, prev)
        for key, prev in old.items():
            if key not in fresh:
                self._call("DELETED", None, prev)
        self.synced.set()
        if self._on_synced is not None:
            self._on_synced()
        return rv

    def _watch(self) -> None:
        """Watch from self._rv until stopped; a normal end (server timeout) resumes at once."""
        while not self._stop.is_set():
            self._stream = self._client.watch(self._res, self._namespace, resource_version=self._rv,
                                              **self._sel)
            self.failing_since = None  # the API server accepted the watch: the view is being kept
            try:
                for kind, obj in self._stream:
                    if kind != "BOOKMARK":
                        self._apply(kind, obj)
                    self._rv = _rv(obj) or self._rv  # after the event is in the cache
                    self._delay = 0.5
            finally:
                self._stream = None

    def _ingest(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return self._project(obj) if self._project is not None else _slim(obj)

    def _same(self, prev: dict[str, Any], obj: dict[str, Any]) -> bool:
        """Only with a projection: equal but for the resourceVersion (no handler call needed)."""
        if self._project is None:
            return False
        return _without_rv(prev) == _without_rv(obj)

    def _apply(self, kind: str, raw: dict[str, Any]) -> None:
        key = object_key(raw)
        obj = None if kind == "DELETED" else self._ingest(raw)
        with self._lock:
            prev = self.cache.get(key)
            if obj is None:
                self.cache.pop(key, None)
            else:
                self.cache[key] = obj
        if obj is None:
            if prev is not None or (kind == "DELETED" and self._project is None):
                self._call("DELETED", None, prev or raw)
        elif prev is None:
            self._call("ADDED", obj, None)
        elif not self._same(prev, obj):
            self._call("MODIFIED", obj, prev)

    def _call(self, kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if self._handler is None:
            return
        try:
            self._handler(kind, new, old)
        except Exception:
            log.exception("%s: handler failed on %s %s", self.name, kind, object_key(new or old or {}))


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop metadata.managedFields: large, and no reader of the cache needs it."""
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


def _without_rv(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
