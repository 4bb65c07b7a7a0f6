"""Pure parts of the lab kubelet's runc runtime: securityContext -> OCI spec, seccomp, quantities."""

from __future__ import annotations

import json
import os
import re

import pytest
from l2lb_lab.kubelet import oci, runtime
from l2lb_lab.kubelet import status as st

PASSWD = "root:x:0:0:root:/root:/bin/bash\nl2lb:x:65532:65532:l2lb agent:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nl2lb:x:65532:\n"
IMAGE = {"config": {"User": "65532:65532", "Entrypoint": ["python3", "-m", "l2lb_agent"], "Cmd": ["--help"],
                    "Env": ["PATH=/usr/bin:/bin", "PYTHONUNBUFFERED=1"], "WorkingDir": "/"}}
NET_RAW_ONLY = {"drop": ["ALL"], "add": ["NET_RAW"]}


def pod(container_sc=None, pod_sc=None, **spec):
    container = {"name": "main", "image": "ghcr.io/l2lb/l2lb-agent:0.1.0"}
    if container_sc is not None:
        container["securityContext"] = container_sc
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "0123-4567"},
            "spec": {"containers": [container], "securityContext": pod_sc or {}, **spec}}, container


def resolve(container_sc=None, pod_sc=None, user="65532:65532"):
    p, c = pod(container_sc, pod_sc)
    return oci.security(p, c, oci.parse_user(user, PASSWD, GROUP), PASSWD)


# -- securityContext --------------------------------------------------------------------------
@pytest.mark.parametrize("container_sc, pod_sc, want", [
    ({}, {}, (65532, 65532, oci.DEFAULT_CAPS, False, False, "Unconfined")),
    ({"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
     {"runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
     (65532, 65532, (), True, True, "RuntimeDefault")),
    ({"runAsUser": 0, "capabilities": NET_RAW_ONLY}, {"seccompProfile": {"type": "RuntimeDefault"}},
     (0, 0, ("NET_RAW",), False, False, "RuntimeDefault")),
    ({"runAsUser": 1000}, {"runAsUser": 0, "runAsGroup": 7},
     (1000, 7, oci.DEFAULT_CAPS, False, False, "Unconfined")),
    ({"capabilities": {"drop": ["NET_RAW", "CAP_KILL"]}}, {}, (65532, 65532,
     tuple(c for c in oci.DEFAULT_CAPS if c not in ("NET_RAW", "KILL")), False, False, "Unconfined")),
], ids=["image-defaults", "controller", "speaker", "container-overrides-pod", "drop-some"])
def test_security_context_folds_pod_and_container_over_the_image(container_sc, pod_sc, want):
    sec = resolve(container_sc, pod_sc)
    uid, gid, caps, nnp, ro, seccomp = want
    assert (sec.uid, sec.gid, set(sec.caps), sec.no_new_privs, sec.readonly_root, sec.seccomp) == \
        (uid, gid, set(caps), nnp, ro, seccomp)


@pytest.mark.parametrize("container_sc, user, message", [
    ({"runAsNonRoot": True, "runAsUser": 0}, "65532", "runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True}, "0", "runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True}, "l2lb", "image has non-numeric user (l2lb)"),
    ({"privileged": True}, "0", "privileged containers are not run"),
    ({"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}, "0",
     "'Localhost' is not supported"),
    ({"capabilities": {"add": ["NET_RAWW"]}}, "0", "unknown capability 'NET_RAWW'"),
    ({}, "nobody", "image user 'nobody' is not in the image's /etc/passwd"),
], ids=["explicit-root", "image-root", "non-numeric", "privileged", "localhost-seccomp", "typo",
        "no-such-user"])
def test_security_context_refusals_say_why(container_sc, user, message):
    with pytest.raises(oci.SpecError, match=re.escape(message)) as err:
        resolve(container_sc, user=user)
    assert err.value.reason == "CreateContainerConfigError"
    assert 'pod: "p_ns(0123-4567)"' in str(err.value) or "capability" in str(err.value)


def test_capabilities_all_means_all():
    assert oci.capabilities({"add": ["ALL"]}) == oci.ALL_CAPS
    assert oci.capabilities({"drop": ["ALL"]}) == ()


def test_image_user_names_resolve_in_the_images_etc_files():
    assert oci.parse_user("l2lb", PASSWD, GROUP) == (65532, 65532, "l2lb")
    assert oci.parse_user("l2lb:root", PASSWD, GROUP) == (65532, 0, "l2lb")
    assert oci.parse_user("", PASSWD, GROUP) == (0, 0, "0")
    assert oci.parse_user("ghost", PASSWD, GROUP)[0] is None


# -- process, env, resources ---------------------------------------------------------------------
@pytest.mark.parametrize("command, args, want", [
    (None, None, ["python3", "-m", "l2lb_agent", "--help"]),
    (None, ["speaker"], ["python3", "-m", "l2lb_agent", "speaker"]),
    (["python3", "-c"], ["print($(X))"], ["python3", "-c", "print(1)"]),
    (["sh"], None, ["sh"]),  # command drops the image's CMD too
], ids=["image", "args-replace-cmd", "command-and-args-expanded", "command-only"])
def test_process_args_follow_kubernetes_rules(command, args, want):
    container = {"name": "main", **({"command": command} if command else {}),
                 **({"args": args} if args else {})}
    assert oci.process_args(container, IMAGE, {"X": "1"}) == want


def test_pod_env_wins_over_image_env():
    assert oci.image_env(IMAGE, {"PYTHONUNBUFFERED": "0", "A": "b"}) == {
        "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "0", "A": "b"}


@pytest.mark.parametrize("text, value", [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("128M", 128e6),
                                         ("250m", 0.25), ("2", 2), ("1e3", 1000)])
def test_quantities(text, value):
    assert oci.quantity(text, "f") == pytest.approx(value)


def test_bad_quantity_names_field_and_value():
    with pytest.raises(oci.SpecError, match=r"resources.limits.memory: not a quantity: '12 parsecs'"):
        oci.resources({"resources": {"limits": {"memory": "12 parsecs"}}})


def test_resources_become_cgroup_limits():
    res = oci.resources({"resources": {"requests": {"cpu": "25m", "memory": "64Mi"},
                                       "limits": {"memory": "256Mi", "cpu": "500m"}}})
    assert res["memory"] == {"limit": 256 * 2**20, "swap": 256 * 2**20}
    assert res["cpu"] == {"period": 100000, "quota": 50000, "shares": 25}


# -- the rendered spec ---------------------------------------------------------------------------------
def render(sec, **kw):
    args = {"sec": sec, "args": ["python3"], "env": {"A": "1"}, "cwd": "/", "rootfs": "/r", "mounts": [],
            "netns": "/run/netns/l2lb-node1", "hostname": None, "cgroups_path": "l2lb-lab/u/c",
            "linux_resources": {}, "seccomp": None, "termination_log": "/pod/main.termination-log", **kw}
    return oci.render(**args)


def test_speaker_spec_has_net_raw_only_and_joins_the_node_netns():
    spec = render(resolve({"runAsUser": 0, "capabilities": NET_RAW_ONLY, "allowPrivilegeEscalation": False,
                           "readOnlyRootFilesystem": True}))
    caps = spec["process"]["capabilities"]
    assert caps == {"bounding": ["CAP_NET_RAW"], "effective": ["CAP_NET_RAW"], "permitted": ["CAP_NET_RAW"]}
    assert spec["process"]["noNewPrivileges"] is True and spec["root"] == {"path": "/r", "readonly": True}
    assert {"type": "network", "path": "/run/netns/l2lb-node1"} in spec["linux"]["namespaces"]
    assert "uts" not in {n["type"] for n in spec["linux"]["namespaces"]}  # hostNetwork: the node's hostname
    assert {"destination": "/dev/termination-log", "type": "bind", "source": "/pod/main.termination-log",
            "options": ["bind", "rw", "nosuid", "nodev", "noexec"]} in spec["mounts"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"] and "/proc/sys" in spec["linux"]["readonlyPaths"]


def test_non_root_user_gets_capabilities_only_in_the_bounding_set():
    spec = render(resolve({"runAsUser": 65532, "capabilities": NET_RAW_ONLY}))
    assert spec["process"]["capabilities"] == {"bounding": ["CAP_NET_RAW"], "effective": [], "permitted": []}
    assert spec["process"]["user"] == {"uid": 65532, "gid": 65532, "additionalGids": []}


def test_a_pod_hostname_gets_its_own_uts_namespace():
    spec = render(resolve(), hostname="p")
    assert spec["hostname"] == "p" and {"type": "uts"} in spec["linux"]["namespaces"]


def test_volume_mounts_bind_the_serviceaccount_and_empty_dirs():
    p, c = pod()
    p["spec"]["volumes"] = [{"name": "kube-api-access-x", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}}, {"configMap": {"name": "kube-root-ca.crt"}}]}},
        {"name": "scratch", "emptyDir": {}}, {"name": "host", "hostPath": {"path": "/etc"}}]
    c["volumeMounts"] = [{"name": "kube-api-access-x", "mountPath": oci.SA_MOUNT, "readOnly": True},
                         {"name": "scratch", "mountPath": "/tmp"}]
    mounts = oci.volume_mounts(p, c, sa_dir="/pod/serviceaccount", pod_dir="/pod")
    assert mounts == [oci.Mount(source="/pod/serviceaccount", destination=oci.SA_MOUNT, readonly=True),
                      oci.Mount(source="/pod/volumes/scratch", destination="/tmp", readonly=False)]
    c["volumeMounts"].append({"name": "host", "mountPath": "/host"})
    with pytest.raises(oci.SpecError, match="volume 'host': type hostPath is not supported"):
        oci.volume_mounts(p, c, sa_dir="/s", pod_dir="/pod")


# -- seccomp RuntimeDefault --------------------------------------------------------------------------
PROFILE = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
           "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                        "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
           "syscalls": [
               {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {},
                "excludes": {}},
               {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
               {"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW",
                "includes": {"arches": ["s390x"]}},
               {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
               {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
               {"names": ["new_thing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.1"}},
           ]}


def test_seccomp_profile_is_filtered_for_arch_kernel_and_capabilities():
    spec = oci.seccomp_profile(PROFILE, ("NET_RAW",), kernel=(6, 18))
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO" and spec["defaultErrnoRet"] == 38
    assert spec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [(r["names"], r["action"]) for r in spec["syscalls"]]
    assert names == [(["read", "write"], "SCMP_ACT_ALLOW"), (["arch_prctl"], "SCMP_ACT_ALLOW"),
                     (["mount"], "SCMP_ACT_ERRNO")]
    admin = oci.seccomp_profile(PROFILE, ("SYS_ADMIN",), kernel=(9, 2))
    assert (["mount"], "SCMP_ACT_ALLOW") in [(r["names"], r["action"]) for r in admin["syscalls"]]
    assert ["new_thing"] in [r["names"] for r in admin["syscalls"]]


@pytest.mark.skipif(not os.path.exists(runtime.SECCOMP_PROFILE), reason="containers-common not installed")
def test_the_installed_default_profile_converts_and_denies_by_default():
    with open(runtime.SECCOMP_PROFILE, encoding="utf-8") as f:
        spec = oci.seccomp_profile(json.load(f), ("NET_RAW",))
    allowed = {n for r in spec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"socket", "read", "execve"} <= allowed and "kexec_load" not in allowed
    assert spec["defaultAction"] != "SCMP_ACT_ALLOW"


# -- runtime's pure helpers -------------------------------------------------------------------------------
def test_runtime_choice_names_the_variable():
    assert runtime.selected({}) == runtime.DEFAULT
    assert runtime.selected({"L2LB_LAB_RUNTIME": "process"}) == "process"
    with pytest.raises(ValueError, match="L2LB_LAB_RUNTIME: must be 'runc' or 'process', got 'crun'"):
        runtime.selected({"L2LB_LAB_RUNTIME": "crun"})


def test_cgroup_hierarchies_to_mount_follow_proc_self_cgroup():
    hybrid = "9:name=systemd:/\n4:memory:/x\n2:cpu,cpuacct:/\n0::/\n"
    assert runtime.cgroup_mounts(hybrid) == [
        ("tmpfs", "mode=755", "/sys/fs/cgroup"), ("cgroup", "name=systemd", "/sys/fs/cgroup/systemd"),
        ("cgroup", "memory", "/sys/fs/cgroup/memory"),
        ("cgroup", "cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct")]
    assert runtime.cgroup_mounts("0::/\n") == [("cgroup2", "", "/sys/fs/cgroup")]


def test_container_cgroups_live_under_the_kubelets_own_cgroup_in_each_hierarchy():
    assert runtime.cgroup_parents("9:name=systemd:/\n4:memory:/sandbox/x\n0::/\n") == [
        "/sys/fs/cgroup/systemd/l2lb-lab", "/sys/fs/cgroup/memory/sandbox/x/l2lb-lab"]
    assert runtime.cgroup_parents("0::/a/b\n") == ["/sys/fs/cgroup/a/b/l2lb-lab"]


@pytest.mark.parametrize("file_text, log, policy, code, want", [
    ("bye\n", "x\n", "File", 1, "bye"),
    ("", "a\nerror: no NET_RAW\n", "File", 2, ""),
    ("", "a\nerror: no NET_RAW\n", "FallbackToLogsOnError", 2, "a\nerror: no NET_RAW"),
    ("", "fine\n", "FallbackToLogsOnError", 0, ""),
    ("", "\n".join(str(i) for i in range(200)), "FallbackToLogsOnError", 1,
     "\n".join(str(i) for i in range(120, 200))),
], ids=["file", "file-empty", "fallback", "fallback-success", "fallback-80-lines"])
def test_termination_message(file_text, log, policy, code, want):
    assert st.termination_message(file_text, log, policy, code) == want
