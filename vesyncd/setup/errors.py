"""
What can go wrong while provisioning a plug, as exceptions whose messages say what to try.

Messages never contain the Wi-Fi password: they name fields, never their values.
"""

from __future__ import annotations

from typing import Any, Mapping


class ProvisionError(Exception):
    """Provisioning failed; the message says why and what to try.  Never contains the password."""


class InvalidSetupRequest(ProvisionError, ValueError):
    """The request cannot be sent: a field is invalid, or the message is too long for the plug."""


class PlugUnreachable(ProvisionError):
    """No TCP connection to the plug's setup port (refused, unreachable, or timed out)."""


class PlugTimeout(ProvisionError):
    """Connected and sent the request, but no complete answer came within the timeout."""


class BadReply(ProvisionError):
    """The plug answered something that is not a setup reply (garbage, too long, cut short)."""


class PlugRefused(ProvisionError):
    """The plug answered with an error code; C{code} is the raw C{err} value, C{reply} the JSON."""

    def __init__(self, code: object, reply: Mapping[str, Any]) -> None:
        """Keep the code and the reply, and say what the plug did."""
        super().__init__(
            f"the plug refused the settings (err {code!r}); check the Wi-Fi name and password, "
            "put the plug back in setup mode and try again"
        )
        self.code = code
        self.reply = dict(reply)
