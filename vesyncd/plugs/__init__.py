"""The plug side: the frame codec and the thin Autobahn WebSocket adapter with its limits."""
