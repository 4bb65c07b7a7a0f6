"""Throwaway PKI and kubeconfigs for the lab's control plane (first step of `lab up`).

Creates, under .lab/pki: a CA, the API server's serving cert, client certs for admin
(O=system:masters), kube-controller-manager and kube-scheduler, and the ServiceAccount
signing key pair; then the kubeconfigs. ECDSA P-256 keeps generation fast. Nothing here
is meant to be secure beyond the lab's lifetime: `lab down` deletes it all.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import topology as topo

VALIDITY = dt.timedelta(days=30)
API_SANS_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local")
API_SANS_IP = ("127.0.0.1", "::1", "10.96.0.1", "fd00:10:96::1")

# kubeconfig name -> (CN, O or None)
CLIENTS = {
    "admin": ("lab-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
}


@dataclass(frozen=True)
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: x509.Name, issuer: x509.Name,
             pub: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY))


def make_ca() -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("l2lb-lab-ca")
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issuer(cert, key)


def issue(ca: Issuer, cn: str, *, org: str | None = None, server: bool = False) -> Issuer:
    """A leaf cert signed by `ca`: a serving cert with the API SANs, or a client cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    b = (_builder(_name(cn, org), ca.cert.subject, key.public_key())
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in API_SANS_DNS]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in API_SANS_IP]
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issuer(b.sign(ca.key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(ca_pem: bytes, client: Issuer, user: str) -> dict:
    """A kubeconfig dict with embedded credentials (so it works from any cwd and namespace)."""
    server = f"https://{topo.API_HOST}:{topo.API_PORT}"
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "l2lb-lab", "preferences": {},
        "clusters": [{"name": "l2lb-lab",
                      "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(_cert_pem(client.cert)),
                                          "client-key-data": _b64(_key_pem(client.key))}}],
        "contexts": [{"name": "l2lb-lab", "context": {"cluster": "l2lb-lab", "user": user}}],
    }


def create(paths: topo.Paths) -> None:
    """Write the whole PKI and the kubeconfigs; a no-op if they already exist."""
    if paths.kubeconfig.exists() and (paths.pki / "sa.key").exists():
        return
    paths.pki.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    ca_pem = _cert_pem(ca.cert)
    _write(paths.pki / "ca.crt", ca_pem)
    _write(paths.pki / "ca.key", _key_pem(ca.key), 0o600)
    api = issue(ca, "kube-apiserver", server=True)
    _write(paths.pki / "apiserver.crt", _cert_pem(api.cert))
    _write(paths.pki / "apiserver.key", _key_pem(api.key), 0o600)
    sa = ec.generate_private_key(ec.SECP256R1())
    _write(paths.pki / "sa.key", _key_pem(sa), 0o600)
    _write(paths.pki / "sa.pub", sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for name, (cn, org) in CLIENTS.items():
        client = issue(ca, cn, org=org)
        _write(paths.pki / f"{name}.crt", _cert_pem(client.cert))
        _write(paths.pki / f"{name}.key", _key_pem(client.key), 0o600)
        target = paths.kubeconfig if name == "admin" else paths.pki / f"{name}.kubeconfig"
        _write(target, yaml.safe_dump(kubeconfig(ca_pem, client, name), sort_keys=False).encode(), 0o600)
