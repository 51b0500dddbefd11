"""HTTP benchmarks: wrk scripts, the orchestrator and its report, the echo and LitServe peers."""
