"""The control plane: the front-end API over the core, AMP, Perspective Broker and the client."""
