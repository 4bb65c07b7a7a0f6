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
