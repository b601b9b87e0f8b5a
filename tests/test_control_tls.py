"""TLS on the control port over loopback: a pinned fingerprint or CA is accepted, a wrong one refused with a clear error."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import endpoints, reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from control_helpers import TOKEN, World, selfSignedPEM
from vesyncd.control.client import CertificateRefused, certificateFingerprint, connect


class TLSTests(unittest.TestCase):
    """vesyncctl's client verifies the daemon's certificate."""

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        """Serve the control port with a fresh self-signed certificate on 127.0.0.1."""
        self.world = World()
        self.world.factory.clock = reactor
        tmp = Path(self.mktemp())
        tmp.mkdir()
        cert, key = selfSignedPEM()
        self.cert = tmp / "cert.pem"
        self.cert.write_bytes(cert)
        (tmp / "key.pem").write_bytes(key)
        self.fingerprint = certificateFingerprint(cert)
        otherCert, _ = selfSignedPEM()
        self.otherCA = tmp / "other.pem"
        self.otherCA.write_bytes(otherCert)
        endpoint = endpoints.serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={tmp / 'key.pem'}:certKey={self.cert}")
        self.port = yield endpoint.listen(self.world.factory)
        self.addCleanup(self.port.stopListening)
        self.where = f"ssl:localhost:{self.port.getHost().port}"

    @inlineCallbacks
    def closed(self, client):  # type: ignore[no-untyped-def]
        """Close the client and wait until both ends are gone."""
        client.close()
        yield client.protocol.lost
        for _ in range(100):
            if not self.world.factory.connections:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)

    @inlineCallbacks
    def test_pinnedFingerprint(self):  # type: ignore[no-untyped-def]
        """The right fingerprint connects and logs in."""
        client = yield connect(reactor, self.where, TOKEN, fingerprint=self.fingerprint, timeout=5)
        info = yield client.info()
        self.assertIn("version", info)
        yield self.closed(client)

    @inlineCallbacks
    def test_caAndHostName(self):  # type: ignore[no-untyped-def]
        """The certificate verifies against its CA file and host name."""
        client = yield connect(reactor, self.where, TOKEN, ca=self.cert, timeout=5)
        yield self.closed(client)

    @inlineCallbacks
    def test_wrongFingerprintRefused(self):  # type: ignore[no-untyped-def]
        """A different fingerprint is refused, and the error says so."""
        with self.assertRaises(CertificateRefused) as caught:
            yield connect(reactor, self.where, TOKEN, fingerprint="00" * 32, timeout=5)
        self.assertIn("fingerprint", str(caught.exception))
        self.assertIn(self.fingerprint, str(caught.exception))

    @inlineCallbacks
    def test_wrongCARefused(self):  # type: ignore[no-untyped-def]
        """A certificate not signed by the given CA is refused as a certificate error."""
        with self.assertRaises(CertificateRefused) as caught:
            yield connect(reactor, self.where, TOKEN, ca=self.otherCA, timeout=5)
        self.assertIn("certificate", str(caught.exception))
