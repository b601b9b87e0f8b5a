"""The web front end: JSON API, dashboard page, server-sent events and Prometheus metrics."""

from vesyncd.web.api import WebApp
from vesyncd.web.site import makeSite

__all__ = ["WebApp", "makeSite"]
