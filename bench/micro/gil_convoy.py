"""Why the server shortens the GIL switch interval: the "convoy effect", measured.

One thread runs model steps of the bundled model (batch 32 × 10 tokens, then the
decoder's top-k, as a predict step does); another runs pure Python, as the event loop
does under load. Each torch op releases the GIL and must win it back when it finishes;
with CPython's 5 ms switch interval it waits up to 5 ms each time. Prints model steps/s
alone and next to the busy thread, for each interval, and the ratio.

    python -m bench.micro.gil_convoy [--seconds 3] [--intervals-ms 5,1,0.1]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from models.checkpoint import load

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"


def model_step(model_dir: Path) -> Callable[[], None]:
    model = load(model_dir, torch.device("cpu")).model.eval()
    tokens = torch.randint(0, model.decoder.out_features, (32, 10))

    @torch.inference_mode()
    def step() -> None:
        sequence = model.embedding(tokens)
        for layer in model.layers:
            sequence, _ = layer(sequence)
        model.decoder(sequence[:, -1]).topk(5, -1)

    return step


def busy_python(stop: threading.Event, count: list[int]) -> None:
    while not stop.is_set():
        total = 0
        for i in range(1000):
            total += i
        count[0] += 1


def steps_per_s(step: Callable[[], None], seconds: float, with_busy_loop: bool) -> float:
    stop = threading.Event()
    busy_count = [0]
    busy = threading.Thread(target=busy_python, args=(stop, busy_count), daemon=True)
    if with_busy_loop:
        busy.start()
    steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - started
    stop.set()
    if with_busy_loop:
        busy.join()
    return steps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--intervals-ms", default="5,1,0.1")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    step = model_step(args.model)
    for _ in range(5):
        step()
    print(f"torch {torch.__version__}, {args.threads} torch thread(s), {args.seconds:g} s each")
    print(f"{'switch interval':>16} {'alone':>10} {'next to a busy thread':>22} {'ratio':>7}")
    for interval in (float(v) for v in args.intervals_ms.split(",")):
        sys.setswitchinterval(interval / 1000)
        alone = steps_per_s(step, args.seconds, with_busy_loop=False)
        shared = steps_per_s(step, args.seconds, with_busy_loop=True)
        print(
            f"{interval:>13g} ms {alone:>8.1f}/s {shared:>20.1f}/s {shared / alone:>7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
