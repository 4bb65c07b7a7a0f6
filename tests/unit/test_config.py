"""The pools config model (l2lb_agent.config): valid shapes, every refusal, helpers, big pools."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from l2lb_agent import config

TUTORIAL = """
address-pools:
- name: my-ip-space
  protocol: layer2
  addresses:
  - 192.168.1.240/28
"""


def pools(*entries: str) -> str:
    return "address-pools:\n" + "".join(entries)


def test_tutorial_config_loads_with_defaults() -> None:
    cfg = config.load_config(TUTORIAL)
    (pool,) = cfg.pools
    assert (pool.name, pool.protocol) == ("my-ip-space", "layer2")
    assert (pool.auto_assign, pool.avoid_buggy_ips) == (True, False)
    assert [r.text for r in pool.addresses] == ["192.168.1.240/28"]
    assert pool.size() == 16
    assert pool.contains("192.168.1.240") and pool.contains("192.168.1.255")
    assert not pool.contains("192.168.1.239")


@pytest.mark.parametrize(
    ("address", "first", "last"),
    [
        pytest.param("192.168.1.240/28", "192.168.1.240", "192.168.1.255", id="cidr-v4"),
        pytest.param("10.0.0.5", "10.0.0.5", "10.0.0.5", id="single-v4"),
        pytest.param("10.0.0.5-10.0.0.9", "10.0.0.5", "10.0.0.9", id="range-v4"),
        pytest.param("  10.0.0.5 -  10.0.0.9 ", "10.0.0.5", "10.0.0.9", id="range-spaces-trimmed"),
        pytest.param("10.0.0.5-10.0.0.5", "10.0.0.5", "10.0.0.5", id="range-one-address"),
        pytest.param("fd00:4c32:6c62::/64", "fd00:4c32:6c62::", "fd00:4c32:6c62::ffff:ffff:ffff:ffff",
                     id="cidr-v6"),
        pytest.param("fd00::10 - fd00::20", "fd00::10", "fd00::20", id="range-v6"),
        pytest.param("FD00::1", "fd00::1", "fd00::1", id="single-v6-uppercase"),
    ],
)
def test_address_forms(address: str, first: str, last: str) -> None:
    r = config.parse_address(address)
    assert (r.start, r.end) == (int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last)))


def test_explicit_flags_and_yaml_roundtrip() -> None:
    raw = pools("- name: a\n  protocol: layer2\n  addresses: [' 10.0.0.1 - 10.0.0.3', 'fd00::/120']\n"
                "  auto-assign: false\n  avoid-buggy-ips: true\n")
    cfg = config.load_config(raw)
    assert (cfg.pools[0].auto_assign, cfg.pools[0].avoid_buggy_ips) == (False, True)
    text = config.to_yaml(cfg)
    assert "10.0.0.1-10.0.0.3" in text
    assert config.load_config(text) == cfg
    assert config.to_yaml(raw) == text


def test_mapping_input_and_empty_pool_list() -> None:
    assert config.load_config({"address-pools": []}) == config.Config(pools=())


# Each refusal: (yaml, expected field path, words the message must contain)
INVALID = [
    pytest.param(pools("- name: a\n  addresses: [10.0.0.1]\n  colour: red\n"), "address-pools[0].colour",
                 ["unknown key", "colour", "pool 'a'"], id="unknown-pool-key"),
    pytest.param("address-pools: []\npeers: []\n", "peers", ["unknown key", "peers"], id="unknown-top-key"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.1]\n", "- name: a\n  addresses: [10.0.0.2]\n"),
                 "address-pools[1].name", ["duplicate", "'a'"], id="duplicate-name"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.0/24]\n",
                       "- name: b\n  addresses: [10.0.0.200-10.0.1.5]\n"),
                 "address-pools[1].addresses[0]", ["pool 'a'", "pool 'b'", "10.0.0.200-10.0.0.255"],
                 id="overlap-across-pools"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.0/24, 10.0.0.7]\n"), "address-pools[0].addresses[1]",
                 ["same pool", "10.0.0.7", "10.0.0.0/24"], id="overlap-within-pool"),
    pytest.param(pools("- name: a\n  addresses: ['fd00::/64']\n", "- name: b\n  addresses: ['fd00::5']\n"),
                 "address-pools[1].addresses[0]", ["pool 'a'", "fd00::5"], id="overlap-v6"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.9-10.0.0.1]\n"), "address-pools[0].addresses[0]",
                 ["start 10.0.0.9 is after its end 10.0.0.1"], id="range-reversed"),
    pytest.param(pools("- name: a\n  protocol: bgp\n  addresses: [10.0.0.1]\n"), "address-pools[0].protocol",
                 ["bgp", "not supported"], id="bgp"),
    pytest.param(pools("- name: a\n  protocol: layer3\n  addresses: [10.0.0.1]\n"),
                 "address-pools[0].protocol",
                 ["layer3", "unknown protocol"], id="other-protocol"),
    pytest.param(pools("- name: a\n  addresses: ['10.0.0.1-fd00::1']\n"), "address-pools[0].addresses[0]",
                 ["mixes IPv4", "IPv6"], id="mixed-family-range"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.1/24]\n"), "address-pools[0].addresses[0]",
                 ["host bits", "10.0.0.0/24"], id="cidr-host-bits"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.256]\n"), "address-pools[0].addresses[0]",
                 ["10.0.0.256", "not an IP"], id="bad-ip"),
    pytest.param(pools("- name: a\n  addresses: 10.0.0.1\n"), "address-pools[0].addresses",
                 ["expected array"], id="addresses-not-list"),
    pytest.param(pools("- name: a\n  addresses: [10.0.0.1]\n  auto-assign: maybe\n"),
                 "address-pools[0].auto-assign", ["expected boolean", "maybe"], id="bool-type"),
    pytest.param(pools("- addresses: [10.0.0.1]\n"), "address-pools[0]", ["'name'", "required"],
                 id="no-name"),
    pytest.param(pools("- name: my pool\n  addresses: [10.0.0.1]\n"), "address-pools[0].name",
                 ["without spaces"], id="name-with-space"),
    pytest.param("", "config", ["empty"], id="empty"),
    pytest.param("address-pools: [", "config", ["YAML"], id="not-yaml"),
    pytest.param("- a\n- b\n", "config", ["expected object"], id="not-mapping"),
]


@pytest.mark.parametrize(("raw", "field", "words"), INVALID)
def test_invalid_configs_name_field_and_value(raw: str, field: str, words: list[str]) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_config(raw)
    assert info.value.field == field
    for word in words:
        assert word in str(info.value)


def test_error_names_value() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_config(pools("- name: p1\n  addresses: [10.0.0.1]\n",
                                 "- name: p2\n  addresses: [1.2.3.4/33]\n"))
    err = info.value
    assert (err.pool, err.value) == ("p2", "1.2.3.4/33")
    assert "pool 'p2': address-pools[1].addresses[0] = '1.2.3.4/33'" in str(err)


def test_pool_of_and_contains() -> None:
    cfg = config.load_config(pools("- name: a\n  addresses: [10.0.0.0/30]\n",
                                   "- name: b\n  addresses: ['fd00::1-fd00::9']\n"))
    assert config.pool_of(cfg, "10.0.0.3").name == "a"  # type: ignore[union-attr]
    assert config.pool_of(cfg, ipaddress.ip_address("fd00::9")).name == "b"  # type: ignore[union-attr]
    assert config.pool_of(cfg, "10.0.0.4") is None
    assert not config.contains(cfg, "not-an-ip")
    assert config.contains(cfg, "fd00::1")


@pytest.mark.parametrize(
    ("address", "avoid", "expected"),
    [
        pytest.param("10.0.0.0/24", False, 256, id="plain"),
        pytest.param("10.0.0.0/24", True, 254, id="skip-0-and-255"),
        pytest.param("10.0.0.0/22", True, 1016, id="four-blocks"),
        pytest.param("10.0.0.1-10.0.0.254", True, 254, id="range-without-buggy"),
        pytest.param("10.0.0.255-10.0.1.0", True, 0, id="only-buggy"),
        pytest.param("fd00::/120", True, 256, id="v6-unaffected"),
    ],
)
def test_size_with_avoid_buggy(address: str, avoid: bool, expected: int) -> None:
    raw = {"address-pools": [{"name": "a", "addresses": [address], "avoid-buggy-ips": avoid}]}
    assert config.load_config(raw).pools[0].size() == expected


@given(st.integers(0, 2**32 - 1), st.integers(0, 3000))
def test_buggy_count_matches_enumeration(start: int, length: int) -> None:
    end = min(start + length, 2**32 - 1)
    r = config.AddressRange(version=4, start=start, end=end, text="x")
    brute = sum(1 for x in range(start, end + 1) if x & 0xFF not in (0, 255))
    assert config.usable_count(r, True) == brute


def test_huge_pools_are_not_enumerated() -> None:
    started = time.perf_counter()
    cfg = config.load_config(pools("- name: big4\n  addresses: [10.0.0.0/8]\n  avoid-buggy-ips: true\n",
                                   "- name: big6\n  addresses: ['fd00::/64', 'fd01::/48']\n"))
    assert cfg.pools[1].size() == 2**64 + 2**80
    assert config.pool_of(cfg, "fd01::ffff") is cfg.pools[1]
    assert time.perf_counter() - started < 0.5


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 40)), min_size=1, max_size=8))
def test_overlap_detection_matches_brute_force(spans: list[tuple[int, int]]) -> None:
    base = int(ipaddress.ip_address("10.0.0.0"))
    addrs = [f"{ipaddress.ip_address(base + s)}-{ipaddress.ip_address(base + s + n)}" for s, n in spans]
    raw = {"address-pools": [{"name": f"p{i}", "addresses": [a]} for i, a in enumerate(addrs)]}
    sets = [set(range(s, s + n + 1)) for s, n in spans]
    overlapping = any(sets[i] & sets[j] for i in range(len(sets)) for j in range(i))
    if overlapping:
        with pytest.raises(config.ConfigError, match="overlaps"):
            config.load_config(raw)
    else:
        assert len(config.load_config(raw).pools) == len(spans)
