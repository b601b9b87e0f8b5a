"""
Shell completion for vesyncctl: C{vesyncctl completion bash|zsh} prints a script that completes its
commands and options (generated from the parser by shtab) and plug names, which it asks the running
daemon for with C{vesyncctl list --names} (using the same environment: C{VESYNCD_STATE_DIR}, ...).
"""

from __future__ import annotations

from vesyncd.cli.args import buildParser
from vesyncd.cli.output import EXIT_FAILED, CLIError

#: The plug-name completers both scripts define (named in L{vesyncd.cli.parsing.PLUG_COMPLETION}).
PREAMBLE = {
    "bash": """
# Plug names (aliases, else ids) from the running daemon; one a line, so names may hold spaces.
_vesyncctl_plugs() {
  local IFS=$'\\n'
  compgen -W "$(vesyncctl list --names 2>/dev/null)" -- "$1"
}
""",
    "zsh": """
# Plug names (aliases, else ids) from the running daemon, one a line.
_vesyncctl_plugs() {
  local -a plugs
  plugs=(${(f)"$(vesyncctl list --names 2>/dev/null)"})
  compadd -a plugs
}
""",
}


def completionScript(shell: str) -> str:
    """The completion script for C{shell} (C{bash} or C{zsh}); source it, or install it where the shell
    looks (docs/control.md says where)."""
    try:
        import shtab
    except ImportError:  # pragma: no cover - a dependency of vesyncd
        raise CLIError("shell completion needs the shtab package: pip install shtab", "failed", EXIT_FAILED) from None
    return shtab.complete(buildParser(), shell=shell, preamble=PREAMBLE)
