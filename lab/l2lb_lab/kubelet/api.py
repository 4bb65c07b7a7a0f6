"""Thin edge between the lab kubelet and the API server (official `kubernetes` client).

Where it sits: kubelet.py, pods.py and proxy.py call the API only through this module.
Every call carries a timeout, because `lab api-down` blackholes the API (calls hang rather
than fail); callers treat `ApiUnavailable`/`ApiException` as "try again later" and keep
their pods running.  Objects are handled as plain JSON dicts (raw responses), never as
generated models, so new API fields can never break deserialisation.

`Informer` is a list+watch cache (relists on 410 Gone and on any error) that calls
`on_change()` after each change.  It does not guarantee that callers see every
intermediate state, only the latest one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("kubelet.api")

CALL_TIMEOUT = (3.0, 8.0)  # (connect, read) seconds for ordinary calls
# Short watches: one cut silently (api-down holds connections) is noticed at the read timeout.
WATCH_SECONDS = 25  # server-side watch timeout
WATCH_TIMEOUT = (3.0, WATCH_SECONDS + 10.0)
RETRY_SECONDS = 2.0

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiUnavailable(Exception):
    """The API server did not answer in time (connection refused, reset or timed out)."""


def new_client(kubeconfig: str) -> client.ApiClient:
    """An ApiClient for the admin kubeconfig; one per thread that streams a watch."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.retries = False  # our loops retry; urllib3 retries would multiply the timeouts
    return client.ApiClient(cfg)


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> JSON:
    """Call a generated API method and return the response body as a dict.

    Raises ApiException for HTTP errors and ApiUnavailable when the server is unreachable.
    """
    kwargs.setdefault("_request_timeout", CALL_TIMEOUT)
    try:
        resp = func(*args, _preload_content=False, **kwargs)
        data = resp.data
    except ApiException:
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ApiUnavailable(f"{getattr(func, '__name__', func)}: {exc}") from exc
    return json.loads(data) if data else {}


def merge_patch(func: Callable[..., Any], *args: Any, body: JSON) -> JSON:
    """A JSON merge patch (lists are replaced whole, which is what status writers want)."""
    return call(func, *args, body=body, _content_type=MERGE_PATCH)


def obj_key(obj: JSON) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Informer:
    """List+watch cache of one resource kind; start() runs it on a daemon thread."""

    def __init__(self, name: str, list_func: Callable[..., Any], on_change: Callable[[], None],
                 **list_kwargs: Any) -> None:
        self.name = name
        self._list = list_func
        self._kwargs = list_kwargs
        self._on_change = on_change
        self._lock = threading.Lock()
        self._items: dict[str, JSON] = {}  # namespace/name -> object
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> list[JSON]:
        with self._lock:
            return list(self._items.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._relist()
                while not self._stop.is_set():
                    version = self._watch(version)
            except Gone:
                log.info("%s: watch expired (410), relisting", self.name)
                continue
            except (ApiException, ApiUnavailable, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                log.warning("%s: %s; retrying in %.0fs", self.name, describe(exc), RETRY_SECONDS)
            except Exception:  # a bug in on_change must not end the watch for good
                log.exception("%s: unexpected error; relisting", self.name)
            self._stop.wait(RETRY_SECONDS)

    def _relist(self) -> str:
        body = call(self._list, **self._kwargs)
        items = {obj_key(o): o for o in body.get("items", [])}
        with self._lock:
            self._items = items
        self.synced.set()
        self._on_change()
        return body.get("metadata", {}).get("resourceVersion", "")

    def _watch(self, version: str) -> str:
        resp = self._list(watch=True, resource_version=version, allow_watch_bookmarks=True,
                          timeout_seconds=WATCH_SECONDS, _preload_content=False,
                          _request_timeout=WATCH_TIMEOUT, **self._kwargs)
        try:
            for line in iter_resp_lines(resp):
                if not line or self._stop.is_set():
                    continue
                version = self._apply(json.loads(line), version)
        finally:
            resp.close()
            resp.release_conn()
        return version

    def _apply(self, event: JSON, version: str) -> str:
        kind, obj = event.get("type"), event.get("object", {})
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
        new_version = obj.get("metadata", {}).get("resourceVersion", version)
        if kind == "BOOKMARK":
            return new_version
        with self._lock:
            if kind == "DELETED":
                self._items.pop(obj_key(obj), None)
            else:
                self._items[obj_key(obj)] = obj
        self._on_change()
        return new_version


class Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


def describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        try:
            detail = json.loads(exc.body or "{}").get("message", "")
        except ValueError:
            detail = ""
        return f"HTTP {exc.status} {exc.reason}" + (f": {detail}"[:300] if detail else "")
    return f"{type(exc).__name__}: {exc}"[:200]


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_micro() -> str:
    """MicroTime as Leases want it."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
