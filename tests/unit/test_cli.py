"""Flags, env mirroring and kubeconfig resolution (l2lb_agent.cli, l2lb_agent.kubeconfig); no cluster."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from l2lb_agent import cli, kubeconfig


def parse(argv: list[str]) -> object:
    return cli.validate(cli.build_parser().parse_args(argv))


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "L2LB_NAMESPACE",
        "L2LB_METRICS_PORT",
        "L2LB_LOADBALANCER_CLASS",
        "L2LB_KUBECONFIG",
        "KUBECONFIG",
    ):
        monkeypatch.delenv(var, raising=False)
    args = parse(["controller"])
    assert (args.namespace, args.metrics_port, args.loadbalancer_class) == (
        "l2lb-system",
        7472,
        "l2lb.io/layer2",
    )
    assert (args.kubeconfig, args.claim_unclassed, args.workers) == (None, True, 16)
    assert args.timings.lease_duration == cli.CONTROLLER_LEASE_DURATION
    assert parse(["speaker", "--node-name", "n"]).timings.lease_duration == 2.0
    assert parse(["speaker", "--node-name", "node1"]).metrics_port == 7473


def test_env_is_the_default_and_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L2LB_NAMESPACE", "from-env")
    monkeypatch.setenv("L2LB_METRICS_PORT", "9000")
    monkeypatch.setenv("L2LB_NODE_NAME", "node2")
    monkeypatch.setenv("L2LB_INTERFACES", "eth0, eth1")
    monkeypatch.setenv("L2LB_CLAIM_UNCLASSED", "false")
    monkeypatch.setenv("KUBECONFIG", "/k/config")
    args = parse(["speaker", "--metrics-port", "0"])
    assert (args.namespace, args.metrics_port, args.node_name) == ("from-env", 0, "node2")
    assert args.interfaces == ["eth0", "eth1"] and args.claim_unclassed is False
    assert args.kubeconfig == "/k/config"
    monkeypatch.setenv("L2LB_KUBECONFIG", "/l2lb/config")
    assert parse(["controller"]).kubeconfig == "/l2lb/config"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(
            ["controller", "--metrics-port", "http"],
            ["--metrics-port", "L2LB_METRICS_PORT", "'http'"],
            id="port-not-int",
        ),
        pytest.param(
            ["controller", "--metrics-port", "70000"],
            ["--metrics-port", "'70000'", "0-65535"],
            id="port-range",
        ),
        pytest.param(
            ["controller", "--log-level", "loud"], ["--log-level", "'loud'", "debug"], id="log-level"
        ),
        pytest.param(
            ["controller", "--lease-duration", "soon"], ["--lease-duration", "'soon'"], id="lease-nan"
        ),
        pytest.param(
            ["controller", "--lease-duration", "2", "--renew-interval", "1.5"],
            ["renew_interval", "1.5"],
            id="renew-too-long",
        ),
        pytest.param(
            ["controller", "--claim-unclassed", "perhaps"], ["--claim-unclassed", "'perhaps'"], id="bool"
        ),
        pytest.param(["controller", "--workers", "0"], ["--workers", "'0'"], id="workers"),
        pytest.param(["speaker"], ["--node-name", "L2LB_NODE_NAME"], id="speaker-needs-node"),
    ],
)
def test_bad_values_name_flag_env_and_value(
    argv: list[str], words: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("L2LB_NODE_NAME", raising=False)
    with pytest.raises(cli.FlagError) as info:
        parse(argv)
    for word in words:
        assert word in str(info.value)


def _cert_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_kubeconfig(path: Path, users: list[dict[str, object]], current: str = "a") -> None:
    cert, _ = _cert_pair()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": base64.b64encode(cert).decode(),
                },
            }
        ],
        "users": users,
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "cert"}},
            {"name": "b", "context": {"cluster": "c", "user": "tok"}},
        ],
    }
    path.write_text(yaml.safe_dump(doc))


def test_kubeconfig_cert_data_token_and_context(tmp_path: Path) -> None:
    cert, key = _cert_pair()
    (tmp_path / "token").write_text("file-token\n")
    users = [
        {
            "name": "cert",
            "user": {
                "client-certificate-data": base64.b64encode(cert).decode(),
                "client-key-data": base64.b64encode(key).decode(),
            },
        },
        {"name": "tok", "user": {"tokenFile": "token"}},
    ]
    path = tmp_path / "kubeconfig"
    _write_kubeconfig(path, users)
    a = kubeconfig.load_kubeconfig(str(path))
    assert a.server == "https://127.0.0.1:6443" and isinstance(a.ssl_context, ssl.SSLContext)
    assert a.token.get() is None and "context a" in a.source
    b = kubeconfig.load_kubeconfig(str(path), context="b")
    assert b.token.get() == "file-token"  # relative tokenFile resolved next to the kubeconfig


def test_kubeconfig_errors_name_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    _write_kubeconfig(path, [{"name": "cert", "user": {}}])
    with pytest.raises(kubeconfig.KubeConfigError, match="users has no entry named 'tok'"):
        kubeconfig.load_kubeconfig(str(path), context="b")
    with pytest.raises(kubeconfig.KubeConfigError, match="contexts has no entry named 'zzz'"):
        kubeconfig.load_kubeconfig(str(path), context="zzz")
    with pytest.raises(kubeconfig.KubeConfigError, match="No such file"):
        kubeconfig.load_kubeconfig(str(tmp_path / "missing"))


def test_resolution_order_and_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("L2LB_KUBECONFIG", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(kubeconfig.KubeConfigError, match="not in a cluster"):
        kubeconfig.resolve()
    sa = tmp_path / "sa"
    sa.mkdir()
    cert, _ = _cert_pair()
    (sa / "ca.crt").write_bytes(cert)
    (sa / "token").write_text("sa-token")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = kubeconfig.load_in_cluster(str(sa))
    assert cfg.server == "https://[fd00::1]:443" and cfg.token.get() == "sa-token"
    path = tmp_path / "kc"
    _write_kubeconfig(path, [{"name": "cert", "user": {"token": "t"}}])
    monkeypatch.setenv("KUBECONFIG", f"{path}:/elsewhere")
    assert kubeconfig.resolve().source.startswith(f"kubeconfig {path}")
