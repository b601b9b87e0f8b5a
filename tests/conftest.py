"""Shared pytest setup: the package importable from the checkout, and every test run in a scratch
directory so that trial's C{mktemp()} and stray files never land in the repository."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _scratchDirectory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test with a fresh temporary directory as its working directory."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
