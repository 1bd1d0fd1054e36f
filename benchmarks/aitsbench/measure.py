"""Timing and peak memory of one benchmark cell."""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import time
from pathlib import Path
from typing import Callable

import torch

Work = Callable[[], tuple[int, int]]  # one call: (iterations, units) done


class Clock:
    """perf_counter timing that waits for the GPU; per-cell peak memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.hwm_ok = self._reset_hwm()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @staticmethod
    def _status_kb(field: str) -> int | None:
        try:
            match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        except OSError:
            return None
        return int(match.group(1)) if match else None

    @staticmethod
    def _reset_hwm() -> bool:
        """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def memory_start(self) -> float:
        gc.collect()
        malloc_trim()  # hand freed heap pages back, so the cell's peak is not hidden in cached pages
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device) / 2**20
        rss = self._status_kb("VmRSS")
        self.hwm_ok = self.hwm_ok and self._reset_hwm()
        return (rss or 0) / 1024

    def memory_peak(self, start_mb: float) -> tuple[float, str]:
        """Peak memory of the cell above its start: (MB, what was measured)."""
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - start_mb, "cuda max_memory_allocated"
        hwm = self._status_kb("VmHWM") if self.hwm_ok else None
        if hwm is not None:
            return hwm / 1024 - start_mb, "VmHWM after clear_refs"
        # no per-cell mark available: the process-wide high-water mark (monotone across cells)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process ru_maxrss"


def malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(clock: Clock, fn: Work, min_time: float, warmup: int, windows: int = 5) -> dict:
    """Call ``fn`` for warm-up, then until ``min_time`` seconds have passed, in ``windows``
    consecutive windows of at least ``min_time / windows`` each.

    ``rate`` is over the whole timed span (total units / total time); the per-window rates (their
    median, best and spread) show how noisy the machine was."""
    mem0 = clock.memory_start()
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):  # at least one warm-up call; stop early when calls are slow
        fn()
        if time.perf_counter() - start > max(min_time, 0.25):
            break
    clock.sync()
    iterations = units = 0
    window_rates = []
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(windows):
        w_units, w0 = 0, time.perf_counter()
        while True:
            it, un = fn()
            iterations, units, w_units = iterations + it, units + un, w_units + un
            now = time.perf_counter()
            if now - w0 >= min_time / windows or now - t0 >= min_time:
                clock.sync()
                now = time.perf_counter()
                break
        window_rates.append(w_units / (now - w0))
        if now - t0 >= min_time:
            break
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak, how = clock.memory_peak(mem0)
    return {"iterations": iterations, "units": units, "seconds": seconds, "cpu_seconds": cpu,
            "iter_per_s": iterations / seconds, "rate": units / seconds, "s_per_iter": seconds / iterations,
            "window_rates": window_rates, "rate_median": sorted(window_rates)[len(window_rates) // 2],
            "rate_best": max(window_rates), "spread": max(window_rates) / min(window_rates),
            "peak_mb": peak, "memory": how}


def first_call(fn: Work) -> float:
    """Seconds of one call (compilation, when ``fn`` compiles at its first call)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
