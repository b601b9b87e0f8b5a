"""The DNS responder: answers, forwarding, discovery and the UDP/TCP adapters."""
