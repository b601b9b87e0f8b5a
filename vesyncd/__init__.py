"""vesyncd: a local server that replaces the VeSync cloud for Etekcity Voltson Wi-Fi plugs."""

__version__ = "0.1.0.dev0"
