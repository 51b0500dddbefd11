"""lstm-serve's Python client side; ``lstm_serve.client`` talks to a running server.

The server itself lives in ``service`` and the models in ``models``; this package imports
neither torch nor the server, so a client needs only httpx and websockets.
"""
