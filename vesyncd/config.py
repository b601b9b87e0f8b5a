"""
Configuration files: every long option can also be set in a TOML file given with C{--config}.

Keys are named like the long options (C{plugs = "tcp:17273"}, C{offline-after = 90},
C{no-dns = true}, C{dns-upstream = ["192.0.2.53"]}); the command line wins over the file.  An
unknown key or a value of the wrong kind stops start-up with one line that names it.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from twisted.python import reflect, usage


def findConfigArgument(argv: list[str]) -> str | None:
    """The value of C{--config FILE} / C{--config=FILE} in C{argv}, or None."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def loadConfigFile(path: str) -> dict[str, Any]:
    """Read a TOML file into a flat dict of option names to values.

    @raise usage.UsageError: the file is missing, unreadable or not TOML, or holds a table.
    """
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise usage.UsageError(f"config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise usage.UsageError(f"config file {path}: not valid TOML: {e}") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise usage.UsageError(f"config file {path}: [{key}] tables are not used; write keys at the top level")
    return data


def applyConfig(options: usage.Options, data: dict[str, Any], path: str) -> None:
    """Set C{options} from a config dict as if each key were given on the command line first.

    Parameters are coerced like command-line values; flags take booleans; repeatable options
    (those with an C{opt_} method that appends) take a list.

    @raise usage.UsageError: an unknown key, or a value of the wrong kind, naming the key.
    """
    # The daemon's Options gathers its flags and parameters from each package's options class.
    flagTable: list[Any] = []
    paramTable: list[Any] = []
    reflect.accumulateClassList(type(options), "optFlags", flagTable)
    reflect.accumulateClassList(type(options), "optParameters", paramTable)
    flags = {name for name, *_ in flagTable}
    params = {name: entry for name, *entry in paramTable}
    for key, value in data.items():
        name = key.replace("_", "-")
        attr = name.replace("-", "_")
        where = f"config file {path}: key {key!r}"
        if name == "config":
            raise usage.UsageError(f"{where}: a config file cannot name another")
        if name in flags:
            if not isinstance(value, bool):
                raise usage.UsageError(f"{where} must be true or false")
            options[name] = 1 if value else 0
        elif name in params:
            coerce = params[name][3] if len(params[name]) > 3 and params[name][3] else None
            if isinstance(value, (list, dict)) or value is None:
                raise usage.UsageError(f"{where} takes one value, not {type(value).__name__}")
            text = str(value).lower() if isinstance(value, bool) else str(value)
            try:
                options[name] = coerce(text) if coerce else text
            except (ValueError, usage.UsageError) as e:
                raise usage.UsageError(f"{where}: {e}") from None
        elif callable(getattr(options, "opt_" + attr, None)):
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, (list, dict, bool)):
                    raise usage.UsageError(f"{where} takes strings")
                try:
                    getattr(options, "opt_" + attr)(str(item))
                except (ValueError, usage.UsageError) as e:
                    raise usage.UsageError(f"{where}: {e}") from None
        else:
            raise usage.UsageError(f"{where} is not an option (see --help for the names)")


def reportUsageError(options: usage.Options, error: usage.UsageError, out: Any = None) -> None:
    """Under twistd or twist (C{options} parsed as their subcommand), write C{error} first, one line
    with a hint to C{--help} instead of the whole usage, and exit with status 2; else return.

    twistd prints a subcommand's full usage before its error line, which hides the one line that
    matters; standalone parsing (tests, the demo launcher) gets the exception as before.
    """
    if getattr(options, "parent", None) is None:
        return
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program not in ("twistd", "twist"):
        program = "twistd"
    out = sys.stderr if out is None else out
    out.write(f"{program} vesyncd: {error}\nsee: {program} vesyncd --help\n")
    out.flush()
    raise SystemExit(2)


#: The listener options, each a Twisted endpoint string.
LISTENER_OPTIONS = ("plugs", "http", "control", "pb")


def checkListenerOptions(options: Any) -> None:
    """Refuse a listener option whose endpoint string Twisted cannot parse, naming the option, before
    the daemon starts (files an C{ssl:} endpoint names are read when it listens).

    @raise usage.UsageError: C{--OPTION VALUE: why}, with the accepted forms.
    """
    from twisted.internet import endpoints

    # Parsing only builds the endpoint; nothing listens, so no reactor is needed (and twistd has not
    # installed the one it was asked for yet).
    notAReactor = object()
    for name in LISTENER_OPTIONS:
        description = options.get(name)
        if not description or (name == "http" and options.get("no-http")):
            continue
        try:
            endpoints.serverFromString(notAReactor, description)
        except (ValueError, KeyError, TypeError) as e:
            raise usage.UsageError(
                f"--{name} {description!r} is not a listening endpoint ({e}); use tcp:PORT:interface=IP, "
                "ssl:PORT:privateKey=KEY.pem or unix:PATH") from None
        except Exception:
            pass  # e.g. an ssl: file that cannot be read yet: listening says which, with the listener's name
