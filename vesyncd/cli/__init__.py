"""
vesyncctl: control vesyncd from the command line, through its control port.

C{main} is the console entry point; C{execute} runs one command line against a given connection (tests).
"""

from vesyncd.cli.main import execute, main

__all__ = ["execute", "main"]
