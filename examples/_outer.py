"""What the paper-experiment scripts share: the device, a progress bar for the outer loop, the plot.

Not an example itself (CI runs every examples/*.py but the ones starting with `_`). Imported by the
scripts next to it: a script's own folder is on sys.path when it runs.
"""
from __future__ import annotations

import sys
import time

import torch


def device(one_cpu_thread: bool = False) -> torch.device:
    """CUDA when present, else the CPU. `one_cpu_thread`: for scripts whose tensors are small (about
    100 x 60): with two threads each product waits on the second OpenMP thread, which on a busy
    2-core machine costs a scheduler slice (15 ms instead of 15 us)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if one_cpu_thread:
        torch.set_num_threads(1)
    return torch.device("cpu")


class Progress:
    """One line per outer loop, redrawn in place on a terminal: a bar, the step, the metrics given.

    Off a terminal (CI logs, a pipe) it prints a plain line every `every` steps and at the end, so
    the log shows the loss as it goes without a wall of carriage returns."""

    def __init__(self, total: int, label: str, every: int | None = None, stream=sys.stdout):
        self.total, self.label, self.stream = total, label, stream
        self.every = every or max(1, total // 10)
        self.tty = stream.isatty()
        self.started = time.perf_counter()

    def update(self, step: int, **metrics) -> None:
        """Report outer step `step` (0-based) with metrics such as loss=0.31."""
        done = step + 1
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self.started
        if self.tty:
            filled = int(30 * done / self.total)
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total}  {text}  {elapsed:.0f}s")
            if done == self.total:
                self.stream.write("\n")
        elif done % self.every == 0 or done == self.total or step == 0:
            self.stream.write(f"{self.label} {done}/{self.total}  {text}  {elapsed:.0f}s\n")
        self.stream.flush()


def pyplot():
    """matplotlib.pyplot on the Agg backend, or exit with how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit('saving the plot needs matplotlib: pip install "optlang-diff[examples]"') from None
    return plt
