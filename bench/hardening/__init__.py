"""The plug-server hardening suite: python -m bench.hardening (see docs/hardening.md)."""
