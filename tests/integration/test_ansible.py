"""The Ansible collection against the lab: deploy, idempotence, the tutorial, check/diff, refusals,
uninstall. Runs the operator's own commands (`ansible-playbook -i inventory/lab site.yml`) from
the checkout and reads the result through the real API server.

Ordered: the tests build on each other (deploy -> rerun -> tutorial -> dry run -> refusals ->
uninstall), as an operator's session would. Marked `lab` by tests/integration/conftest.py.
"""

from __future__ import annotations

import time

import kubernetes.client as k8s
import pytest
import yaml
from ansible_run import NS, REPO, playbook, recap, succeeded

TUTORIAL_IP = "192.168.1.240"
MANIFEST = REPO / "tests" / "manifests" / "tutorial-nginx.yaml"
TUTORIAL_POOL = {"name": "my-ip-space", "protocol": "layer2", "addresses": ["192.168.1.240/28"]}

pytestmark = pytest.mark.timeout(600)


def snapshot(kube) -> dict[str, object]:
    """What a refused or dry run must leave untouched: pools text and workload specs."""
    cm = kube.core.read_namespaced_config_map("config", NS)
    deployment = kube.apps.read_namespaced_deployment("l2lb-controller", NS)
    daemonset = kube.apps.read_namespaced_daemon_set("l2lb-speaker", NS)
    return {
        "config": cm.data["config"],
        "config_rv": cm.metadata.resource_version,
        "deployment_generation": deployment.metadata.generation,
        "daemonset_generation": daemonset.metadata.generation,
    }


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(1)


def lb_ip(kube, name: str = "nginx") -> str | None:
    svc = kube.core.read_namespaced_service(name, "default")
    ingress = (svc.status.load_balancer.ingress or []) if svc.status.load_balancer else []
    return ingress[0].ip if ingress else None


def apply_tutorial(kube) -> None:
    items = yaml.safe_load(MANIFEST.read_text())["items"]
    for create, read, body in (
        (kube.apps.create_namespaced_deployment, kube.apps.read_namespaced_deployment, items[0]),
        (kube.core.create_namespaced_service, kube.core.read_namespaced_service, items[1]),
    ):
        try:
            read(body["metadata"]["name"], "default")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            create("default", body)


def delete_tutorial(kube) -> None:
    for delete in (kube.core.delete_namespaced_service, kube.apps.delete_namespaced_deployment):
        try:
            delete("nginx", "default")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def clean(lab, kube):
    """Start from a cluster without l2lb or the tutorial's nginx; leave it that way."""
    delete_tutorial(kube)
    succeeded(playbook("playbooks/uninstall.yml"))
    yield
    delete_tutorial(kube)
    playbook("playbooks/uninstall.yml")


def test_site_deploys_and_pods_run(clean, kube):
    started = time.monotonic()
    counts = succeeded(playbook("site.yml"))
    print(f"site.yml first run: {time.monotonic() - started:.1f}s, changed={counts['changed']}")
    assert counts["changed"] > 0
    deployment = kube.apps.read_namespaced_deployment_status("l2lb-controller", NS)
    assert deployment.status.ready_replicas == 2
    daemonset = kube.apps.read_namespaced_daemon_set_status("l2lb-speaker", NS)
    assert daemonset.status.number_ready == daemonset.status.desired_number_scheduled == 3
    pods = kube.core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=l2lb").items
    assert sorted({p.metadata.labels["component"] for p in pods}) == ["controller", "speaker"]
    assert all(p.status.phase == "Running" for p in pods)


def test_second_run_changes_nothing(clean, kube):
    started = time.monotonic()
    counts = succeeded(playbook("site.yml"))
    print(f"site.yml idempotent run: {time.monotonic() - started:.1f}s")
    assert counts["changed"] == 0


def test_tutorial_nginx_gets_first_address_and_answers(clean, kube, http_get):
    apply_tutorial(kube)
    assert wait_for(lambda: lb_ip(kube), 60, "nginx's external IP") == TUTORIAL_IP
    def page():
        answer = http_get(f"http://{TUTORIAL_IP}/")
        return answer if "Welcome to nginx!" in (answer.body or "") else None

    assert wait_for(page, 60, "nginx's page from the LAN client").status == 200


def test_check_diff_shows_pool_change_and_changes_nothing(clean, kube, tmp_path):
    before = snapshot(kube)
    extra = {"l2lb_address_pools": [TUTORIAL_POOL, {"name": "extra", "addresses": "192.168.1.200/29"}]}
    result = playbook("site.yml", "--check", "--diff", extra=extra, tmp=tmp_path)
    counts = succeeded(result)
    assert counts["changed"] >= 1
    assert "192.168.1.200/29" in result.stdout  # the diff shows the new pool
    assert snapshot(kube) == before


REFUSALS = [
    pytest.param(
        [{"name": "first", "addresses": "192.168.1.240/28"},
         {"name": "second", "addresses": "192.168.1.250-192.168.1.252"}],
        ["'first'", "'second'", "192.168.1.250-192.168.1.252"], id="overlapping-pools"),
    pytest.param(
        [{"name": "my-ip-space", "addresses": ["192.168.1.240/28", "192.168.1.999"]}],
        ["my-ip-space", "addresses[1]", "192.168.1.999"], id="invalid-address"),
    pytest.param(
        [{"name": "my-ip-space", "addresses": "192.168.1.248/29"}],
        ["default/nginx", TUTORIAL_IP, "allow_orphaned_addresses"], id="orphans-in-use-address"),
]


@pytest.mark.parametrize(("pools", "named"), REFUSALS)
def test_refused_before_any_change(clean, kube, tmp_path, pools, named):
    assert lb_ip(kube) == TUTORIAL_IP  # the tutorial's Service holds the address being protected
    before = snapshot(kube)
    # A manifest change rides along: it must not be applied either.
    extra = {"l2lb_address_pools": pools, "l2lb_log_level": "warning"}
    result = playbook("site.yml", extra=extra, tmp=tmp_path)
    assert result.returncode != 0
    failure = result.stdout + result.stderr
    for part in named:
        assert part in failure, f"{part!r} not named in:\n{failure[-3000:]}"
    assert recap(result)["changed"] == 0
    assert snapshot(kube) == before


def test_uninstall_removes_everything(clean, kube):
    succeeded(playbook("playbooks/uninstall.yml"))
    names = {ns.metadata.name for ns in kube.core.list_namespace().items}
    assert NS not in names
    for read in (kube.rbac.read_cluster_role, kube.rbac.read_cluster_role_binding):
        for name in ("l2lb-controller", "l2lb-speaker"):
            with pytest.raises(k8s.ApiException) as caught:
                read(name)
            assert caught.value.status == 404
    again = succeeded(playbook("playbooks/uninstall.yml"))
    assert again["changed"] == 0
