"""Simulated plugs: for tests, demos, load and the setup exchange."""
