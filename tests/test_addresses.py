"""HOST[:PORT] parsing shared by --server, --plug-address and --dns-upstream."""

import pytest

from vesyncd.addresses import splitHostPort


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.2", ("10.0.0.2", 7)),
    ("10.0.0.2:53", ("10.0.0.2", 53)),
    ("server2.vesync.com:17273", ("server2.vesync.com", 17273)),
    ("[::1]:5", ("::1", 5)),
    ("[fe80::1]", ("fe80::1", 7)),
    ("fe80::1", ("fe80::1", 7)),
    ("  host  ", ("host", 7)),
])
def test_accepted(text: str, expected: tuple) -> None:
    """Every documented form gives (host, port), the default port where none is given."""
    assert splitHostPort(text, 7) == expected


@pytest.mark.parametrize("text", ["", "[::1", "[::1]x", "host:0", "host:70000", "host:abc", ":53", "[]:5"])
def test_refused(text: str) -> None:
    """Malformed forms raise ValueError quoting the input."""
    with pytest.raises(ValueError):
        splitHostPort(text, 7)
