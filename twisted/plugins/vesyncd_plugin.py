"""twistd plugin entry point: `twistd -n vesyncd` and `twist vesyncd`."""

from twisted.application.service import ServiceMaker

vesyncd = ServiceMaker(
    "vesyncd",
    "vesyncd.tap",
    "Local server for Etekcity / VeSync Voltson Wi-Fi plugs (replaces the vendor cloud)",
    "vesyncd",
)
