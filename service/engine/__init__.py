"""The engine: model, state pool, sessions, batching and sampling, in its own process.

Deliberately empty: API processes import ``service.engine.client`` (the only engine module
they need) without loading torch. The engine itself is ``service.engine.core.Engine``.
"""
