"""The HTTP and WebSocket layer: the only package that knows FastAPI."""
