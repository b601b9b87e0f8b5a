"""
The C{/beginConfigRequest} the vendor app sends a plug in setup mode: its fields, checks and defaults.

L{buildConfigRequest} validates every field and returns a L{ConfigRequest}, a dict whose repr and
str hide the Wi-Fi password, so a request in a traceback or a debugger never shows it.  How the
request is framed on the wire is in L{vesyncd.setup.codec}.
"""

from __future__ import annotations

import ipaddress
import re
import secrets

from vesyncd.addresses import splitHostPort
from vesyncd.setup.errors import InvalidSetupRequest

#: Where a plug in setup (AP) mode listens.
SETUP_HOST = "192.168.4.1"
SETUP_PORT = 41234
#: The VeSync cloud address the vendor app sends as C{serverIP}.
VENDOR_SERVER_IP = "104.200.30.164"
#: The port a configured plug connects to on C{serverIP} (C{ws://<serverIP>:17273/gnws}).
SERVER_PORT = 17273

URI_REQUEST = "/beginConfigRequest"

#: Field order of the vendor app's request, kept so captures and our messages compare easily.
REQUEST_FIELDS = (
    "uri",
    "wifiID",
    "wifiPassword",
    "account",
    "wifiBssid",
    "key",
    "serverIP",
    "ip",
    "wifiGateway",
    "wifiDNS",
)

#: The field that holds the Wi-Fi password, never shown.
PASSWORD_FIELD = "wifiPassword"
_MASK = "<hidden>"
_BSSID = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


class ConfigRequest(dict):  # type: ignore[type-arg]
    """A C{/beginConfigRequest} as a plain dict whose C{repr} (and C{str}) hide the password.

    It serialises like any dict (L{vesyncd.setup.codec.encodeSetupMessage}, C{json.dumps}); only the text forms used
    by logs, tracebacks and debuggers are masked.  Keep it out of log events anyway: some log
    observers serialise event values as JSON.
    """

    def __repr__(self) -> str:
        """The dict's repr with C{wifiPassword} replaced by C{<hidden>} when it is set."""
        shown = dict(self)
        if shown.get(PASSWORD_FIELD):
            shown[PASSWORD_FIELD] = _MASK
        return f"ConfigRequest({shown!r})"

    __str__ = __repr__

    def copy(self) -> ConfigRequest:
        """A shallow copy that is still a L{ConfigRequest} (so still masked)."""
        return ConfigRequest(self)


def _checkIPv4(value: str, field: str, *, allowEmpty: bool) -> str:
    """Return C{value} as a canonical dotted IPv4 address, or raise naming C{field}."""
    if allowEmpty and value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidSetupRequest(f"{field} must be a dotted IPv4 address such as 192.168.1.10")
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidSetupRequest(
            f"{field} {value!r} is not a dotted IPv4 address such as 192.168.1.10 "
            "(the plug firmware speaks IPv4 only)"
        ) from None
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        raise InvalidSetupRequest(f"{field} {value} is not a host address")
    return str(address)


def buildConfigRequest(
    ssid: str,
    password: str,
    serverIP: str,
    *,
    dns: str | None = None,
    account: str = "0",
    bssid: str = "",
    ip: str = "",
    gateway: str = "",
    key: int | None = None,
) -> ConfigRequest:
    """Build and validate a C{/beginConfigRequest} with the app's field order.

    @param ssid: the Wi-Fi name, 1-32 bytes of UTF-8.
    @param password: the Wi-Fi passphrase: empty (open network), 8-63 bytes, or 64 hex digits.
    @param serverIP: where the plug connects after joining (dotted IPv4; port 17273 is implied).
    @param dns: sent as C{wifiDNS}.  That the plug then uses it as its DNS server is inferred
        from the field name, not proven; empty (the app's value) when None.
    @param account: the app sends the account e-mail; C{"0"} works and is shortest.
    @param bssid: pin an access point (C{aa:bb:cc:dd:ee:ff}), or empty for any.
    @param ip: static address for the plug, empty for DHCP (the app sends it empty).
    @param gateway: sent as C{wifiGateway}, empty by default as the app does.
    @param key: the app's request key; a random 9-digit number (like the captured C{123456789})
        when None.
    @raise InvalidSetupRequest: a field is invalid; the message names it but never shows the
        password.  The 255-byte limit is checked by L{vesyncd.setup.codec.encodeSetupMessage}.
    """
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode("utf-8")) <= 32:
        raise InvalidSetupRequest("wifiID (the Wi-Fi name) must be 1-32 bytes")
    if not isinstance(password, str):
        raise InvalidSetupRequest("wifiPassword (the Wi-Fi password) must be a string")
    pwLength = len(password.encode("utf-8"))
    if pwLength == 64:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", password):
            raise InvalidSetupRequest(
                "wifiPassword (the Wi-Fi password) of 64 characters must be a hex key; "
                "a passphrase has 8-63 characters"
            )
    elif pwLength != 0 and not 8 <= pwLength <= 63:
        raise InvalidSetupRequest(
            "wifiPassword (the Wi-Fi password) must be empty (open network), 8-63 characters, "
            "or a 64-digit hex key"
        )
    serverIP = _checkIPv4(serverIP, "serverIP", allowEmpty=False)
    dnsValue = _checkIPv4(dns if dns is not None else "", "wifiDNS", allowEmpty=True)
    ipValue = _checkIPv4(ip, "ip", allowEmpty=True)
    gatewayValue = _checkIPv4(gateway, "wifiGateway", allowEmpty=True)
    if not isinstance(account, str) or not account:
        raise InvalidSetupRequest("account must be a non-empty string ('0' when unsure)")
    if not isinstance(bssid, str) or (bssid and not _BSSID.match(bssid)):
        raise InvalidSetupRequest("wifiBssid must be empty or six hex pairs like aa:bb:cc:dd:ee:ff")
    if key is None:
        key = 100_000_000 + secrets.randbelow(900_000_000)
    elif isinstance(key, bool) or not isinstance(key, int) or key < 0:
        raise InvalidSetupRequest("key must be a non-negative integer")
    return ConfigRequest(
        uri=URI_REQUEST,
        wifiID=ssid,
        wifiPassword=password,
        account=account,
        wifiBssid=bssid.lower(),
        key=key,
        serverIP=serverIP,
        ip=ipValue,
        wifiGateway=gatewayValue,
        wifiDNS=dnsValue,
    )


def parsePlugAddress(text: str, defaultPort: int = SETUP_PORT) -> tuple[str, int]:
    """Parse C{HOST}, C{HOST:PORT}, C{[V6]} or C{[V6]:PORT} (for C{--plug-address}).

    @raise InvalidSetupRequest: empty host or a port outside 1-65535.
    """
    try:
        return splitHostPort(text, defaultPort)
    except ValueError as e:
        raise InvalidSetupRequest(f"plug address {e}") from None
