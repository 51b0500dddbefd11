"""Load-testing tools for lstm-serve: an asyncio load generator, a Locust file, an echo app.

Run ``lstm-serve-bench --help`` (``python -m bench.loadgen``); see ``docs/LOADTEST.md``.
"""
