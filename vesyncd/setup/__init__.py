"""Provisioning without the vendor app: the setup codec, the client and the plug-side listener."""
