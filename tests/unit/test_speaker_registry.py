"""speaker_registry.lease_body: what a speaker's registration Lease says (pure; the Registry thread
that writes it runs against the lab's API server in tests/integration)."""

from l2lb_agent import keyring
from l2lb_agent import speaker_registry as sr

KEYS = (b"a" * 32, b"b" * 32)


def test_registration_publishes_ips_interfaces_and_key_ids_never_keys() -> None:
    notes = {**sr.interface_annotations({"eth0": ()}), **sr.key_annotations(KEYS)}
    body = sr.lease_body("node1", "l2lb-system", "pod-1", frozenset({"192.0.2.2", "192.0.2.1"}), notes)
    meta = body["metadata"]
    assert meta["labels"] == {sr.ROLE_LABEL: sr.ROLE, sr.NODE_LABEL: "node1"}
    assert meta["annotations"][sr.ANNOUNCING] == "192.0.2.1,192.0.2.2"
    assert keyring.parse_key_ids(meta["annotations"][sr.KEY_IDS]) == {keyring.key_id(k) for k in KEYS}
    assert not any(k.decode() in str(body) for k in KEYS)


def test_an_annotation_no_longer_published_is_removed_and_foreign_ones_are_kept() -> None:
    base = {"metadata": {"name": "l2lb-speaker-node1", "resourceVersion": "7",
                         "annotations": {sr.INTERFACES: "eth0=192.0.2.0/24", sr.SUBNETS: "192.0.2.0/24",
                                         sr.KEY_IDS: "00000001", "example.com/owner": "ops"}}}
    body = sr.lease_body("node1", "ns", "pod-2", frozenset(), sr.key_annotations(()), base)
    assert body["metadata"]["annotations"] == {sr.ANNOUNCING: "", sr.KEY_IDS: "",
                                               "example.com/owner": "ops"}
    assert body["metadata"]["resourceVersion"] == "7"
