"""keyring.parse_keyring: the speakers' heartbeat keys, refused by position, never echoed."""

import pytest
from l2lb_agent import keyring

GOOD = "a" * 32
GOOD2 = "B+/=_-" * 6


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (GOOD, (GOOD.encode(),)),
        (f"\n {GOOD} \n\n{GOOD2}\n", (GOOD.encode(), GOOD2.encode())),
    ],
    ids=["one", "two-with-blank-lines"],
)
def test_valid(text: str, want: tuple[bytes, ...]) -> None:
    assert keyring.parse_keyring(text) == want


SECRETISH = "s3cr3t!" * 8


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no key given"),
        ("   \n\n", "no key given"),
        ("a" * 31, "keys[1]: 31 characters"),
        ("a" * 257, "keys[1]: 257 characters"),
        (f"{GOOD}\n{SECRETISH}", "keys[2]: only letters"),
        ("\n".join(c * 32 for c in "abcd"), "4 keys given"),
        (f"{GOOD}\n{GOOD}", "listed twice"),
        ("x" * 5000, "5000 characters"),
    ],
    ids=["empty", "blank", "short", "long", "bad-chars", "too-many", "duplicate", "huge"],
)
def test_invalid_names_position_not_value(text: str, fragment: str) -> None:
    with pytest.raises(keyring.KeyringError) as err:
        keyring.parse_keyring(text)
    assert fragment in str(err.value)
    assert SECRETISH not in str(err.value) and GOOD not in str(err.value)


def test_not_text() -> None:
    with pytest.raises(keyring.KeyringError, match="expected text"):
        keyring.parse_keyring(b"x" * 40)  # type: ignore[arg-type]


def test_format_round_trip() -> None:
    assert keyring.parse_keyring(keyring.format_keyring([GOOD, GOOD2])) == (GOOD.encode(), GOOD2.encode())


def test_key_ids_round_trip_in_keyring_order_and_match_the_heartbeat_ids() -> None:
    keys = keyring.parse_keyring(f"{GOOD}\n{GOOD2}\n")
    ids = [keyring.key_id(k) for k in keys]
    text = keyring.format_key_ids(ids)
    assert text == ",".join(f"{i:08x}" for i in ids) and len(text) == 17
    assert keyring.parse_key_ids(text) == frozenset(ids)
    assert keyring.parse_key_ids("") == frozenset()
    assert GOOD not in text and GOOD2 not in text


@pytest.mark.parametrize("text", ["x", "0000001", "00000001,", ",00000001", "DEADBEEF", "00000001 ",
                                  "00000001,00000002,00000003,00000004", "0" * 10_000])
def test_malformed_key_ids_are_refused_naming_the_annotation(text: str) -> None:
    with pytest.raises(keyring.KeyringError, match=r"l2lb\.io/key-ids"):
        keyring.parse_key_ids(text)
