"""The pools config model (l2lb_agent.config): valid shapes, every refusal, helpers, big pools."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import HealthCheck, given, settings
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


# -- hostile input (the corpus in tests/corpus is run by test_corpus.py) -------------------------

def test_link_local_pools_load_with_a_warning() -> None:
    cfg = config.load_config(pools("- name: ll\n  addresses: [169.254.10.0/24, 'fe80::10-fe80::20']\n",
                                   "- name: ok\n  addresses: [10.0.0.0/30]\n"))
    assert len(cfg.pools) == 2
    assert len(cfg.warnings) == 2
    assert "address-pools[0].addresses[0] = '169.254.10.0/24' is link-local" in cfg.warnings[0]
    assert "fe80::/10" in cfg.warnings[1]
    assert config.load_config(TUTORIAL).warnings == ()


def test_node_warnings_name_pool_node_and_address() -> None:
    cfg = config.load_config(TUTORIAL)
    out = config.node_warnings(cfg, [("node1", "192.168.1.11"), ("node2", "192.168.1.241"), ("x", "junk")])
    assert out == ["pool 'my-ip-space' contains 192.168.1.241, the InternalIP of node 'node2': a Service "
                   "given it would take the node's address"]


def test_deep_mapping_input_is_a_config_error() -> None:
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(5000):
        cur["name"] = {}
        cur = cur["name"]  # type: ignore[assignment]
    with pytest.raises(config.ConfigError):
        config.load_config({"address-pools": [deep]})


def test_bytes_input_and_bad_utf8() -> None:
    assert config.load_config(TUTORIAL.encode()).pools[0].name == "my-ip-space"
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load_config(b"address-pools: [\xff]\n")


def test_yaml_values_keep_their_types() -> None:
    cfg = config.load_config(pools("- name: '007'\n  addresses: [\"10.0.0.1\"]\n  auto-assign: no\n"
                                   "  avoid-buggy-ips: True\n"))
    assert (cfg.pools[0].name, cfg.pools[0].auto_assign, cfg.pools[0].avoid_buggy_ips) == ("007", False, True)


_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=4) | st.just([]) | st.just({})
_expression_like = st.fixed_dictionaries({"key": _leaf},
                                        optional={"operator": _leaf, "values": st.lists(_leaf, max_size=3)})
_selector_like = st.dictionaries(st.sampled_from(["matchLabels", "matchExpressions", "x"]),
                                 _leaf | st.lists(_expression_like | _leaf, max_size=2), max_size=2)
_allocation_like = st.dictionaries(st.sampled_from(["priority", "namespaces", "service-selectors", "y"]),
                                   _leaf | st.lists(_leaf | _selector_like, max_size=2), max_size=2)
_pool_like = st.fixed_dictionaries({"name": _leaf | st.sampled_from(["a", "b c", "x,y"]),
                                    "addresses": st.lists(st.text(max_size=3), max_size=2) | _leaf},
                                   optional={"auto-assign": _leaf, "protocol": _leaf, "colour": _leaf,
                                             "interfaces": st.lists(_leaf, max_size=2) | _leaf,
                                             "node-selectors": st.lists(_selector_like, max_size=2) | _leaf,
                                             "service-allocation": _allocation_like | _leaf})


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)  # CI machines are shared
@given(st.dictionaries(st.sampled_from(["address-pools", "peers"]),
                       st.lists(_pool_like | _leaf, max_size=3) | _leaf, max_size=2))
def test_fast_schema_check_agrees_with_jsonschema(doc: dict[str, object]) -> None:
    assert config._fits(config.SCHEMA, doc) == config._VALIDATOR.is_valid(doc)


@given(st.lists(st.tuples(st.integers(2**24, 100 * 2**24), st.integers(0, 200)), min_size=1, max_size=30),
       st.lists(st.integers(0, 2**32 - 1), max_size=30))
def test_pool_of_bisection_matches_a_linear_scan(spans: list[tuple[int, int]], probes: list[int]) -> None:
    spans = sorted(spans)
    kept, last = [], -1
    for s, n in spans:  # drop overlaps: a valid config has none
        if s > last:
            kept.append((s, s + n))
            last = s + n
    ip = ipaddress.IPv4Address
    cfg = config.load_config({"address-pools": [{"name": f"p{i}", "addresses": [f"{ip(a)}-{ip(b)}"]}
                                                for i, (a, b) in enumerate(kept)]})
    for probe in probes + [a for a, _b in kept] + [b + 1 for _a, b in kept]:
        addr = ip(probe % 2**32)
        linear = next((p for p in cfg.pools if p.contains(addr)), None)
        assert config.pool_of(cfg, addr) is linear
