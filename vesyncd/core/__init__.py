"""The network-free core: plug registry, sessions, events, energy accounting and settings."""
