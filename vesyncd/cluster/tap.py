"""
The cluster's part of the daemon (C{--node}): its options, and the service that runs this node's
membership (L{vesyncd.cluster.member}) and its own MQTT connection for the broker link.  Nothing is
built without C{--node}.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from vesyncd.cluster.link import makeClient
from vesyncd.cluster.member import ClusterMember, NotifyingAutomationStore
from vesyncd.cluster.settings import ClusterOptions, ClusterSettings, checkOptions
from vesyncd.core.hub import Hub
from vesyncd.service import DaemonInfo, StartupError

__all__ = ["ClusterOptions", "checkOptions", "makeMember", "attachAutomation", "ClusterService"]

log = Logger()


class ClusterService(service.Service):
    """Runs the member (heartbeat, leases, events) and the link's MQTT connection while the daemon runs."""

    def __init__(self, member: ClusterMember, client: Any) -> None:
        self.member = member
        self.client = client

    def startService(self) -> None:
        """Start the membership and connect to the broker."""
        service.Service.startService(self)
        self.member.start()
        self.client.start()

    def stopService(self) -> Deferred:
        """Give up this node's leases and row, then disconnect."""
        service.Service.stopService(self)
        d = self.member.stop()
        d.addBoth(lambda _: maybeDeferred(self.client.stop))
        return d


def _plugAddress(info: DaemonInfo) -> str | None:
    """This node's plug listener as C{host:port} (the advertised address and the listening port)."""
    listener = info.listeners.get("plugs")
    port = getattr(listener, "port", None)
    if port is None:
        return None
    host = info.facts.get("address")
    host = host() if callable(host) else host
    return f"{host or port.getHost().host}:{port.getHost().port}"


def _advertised(info: DaemonInfo) -> str | None:
    value = info.facts.get("address")
    value = value() if callable(value) else value
    return value if isinstance(value, str) and value else None


def makeMember(parent: service.MultiService, hub: Hub, config: Any, reactor: Any, info: DaemonInfo,
               stored: Any) -> ClusterMember | None:
    """With C{--node}: this node's L{ClusterMember} over the store and the broker, its service added to
    C{parent} and the hub's view of the other nodes' plugs read from the leases; None without C{--node}."""
    settings: ClusterSettings | None = config.get("cluster-settings")
    if settings is None:
        return None
    if stored is None:
        raise StartupError("--node needs a database shared by the nodes (it cannot run without stored state)")
    store = stored.store
    ledger = stored.ledger
    member = ClusterMember(reactor, hub, settings, run=store.run, connection=store.connection,
                           prefix=config["mqtt-prefix"], commandTimeout=hub.settings.command_timeout,
                           loadPlug=getattr(store, "loadPlug", None), reloadEnergy=getattr(ledger, "reloadPlug", None),
                           address=lambda: _advertised(info), plugAddress=lambda: _plugAddress(info))
    hub.attachCluster(member)
    _readOwners(member, hub, store, reactor.seconds())
    client = makeClient(reactor, config["mqtt-settings"], member.link)
    ClusterService(member, client).setServiceParent(parent)
    info.facts["node"] = settings.node
    info.facts["cluster_counters"] = member.counters
    log.info("cluster: node {node}, leases of {lease:g} s, heartbeat every {beat:g} s", node=settings.node,
             lease=settings.lease, beat=settings.heartbeat)
    return member


def _readOwners(member: ClusterMember, hub: Hub, store: Any, now: float) -> None:
    """Mark the plugs other live nodes hold before anything acts on them (a blocking read at start-up,
    before twistd forks; the connection is closed again for the fork)."""
    try:
        rows = store.connection().execute(
            "SELECT leases.plug, leases.node FROM leases LEFT JOIN nodes ON nodes.name = leases.node"
            " WHERE (leases.expires >= ? OR nodes.heartbeat >= ?) AND leases.node <> ?",
            (now, now - member.settings.lease, member.nodeName)).fetchall()
    except Exception as e:
        log.warn("cluster: could not read the leases at start-up: {error}", error=str(e)[:200])
        return
    finally:
        detach = getattr(store, "detach", None)
        if detach is not None:
            detach()
    hub.remoteOwners({str(plug): str(node) for plug, node in rows}, member.nodeName)


def wrapAutomationStore(member: ClusterMember | None, store: Any) -> Any:
    """The automation store the engine should use: on a node, one that tells the other nodes of changes."""
    if member is None or store is None:
        return store
    return NotifyingAutomationStore(store, member)


def attachAutomation(member: ClusterMember | None, engine: Any) -> None:
    """Make the engine run as this node's: items act only for plugs connected here and move with them."""
    if member is None or engine is None:
        return
    member.attachAutomation(engine)
    engine.attachCluster(member.hub.elsewhere, member.loadItems)
