"""Benchmarks and load tools for lstm-serve, in three parts (see ``docs/LOADTEST.md``).

- ``bench.loadgen``: the ``lstm-serve-bench`` CLI and the Locust file (the packaged part);
- ``bench.micro``: the engine, the model, the session store and the GIL without HTTP;
- ``bench.http``: wrk scripts, the orchestrator and its report, the issue-13 targets, the
  echo and LitServe peer apps.

``bench.serverproc`` starts every server a benchmark (or a test) needs. Bench never imports
tests.
"""
