"""Micro benchmarks without HTTP: the bare model, the engine, the session store, the GIL."""
