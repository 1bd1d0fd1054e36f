"""The measured cells of a run, and a progress line on stderr for each."""

from __future__ import annotations

import sys
import time


def net_name(hidden: list[int]) -> str:
    return "x".join(str(h) for h in hidden)


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_mb(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"


class Results:
    """Every cell: ``net``, ``kind`` (part1_retrain, part2, simulate, ...), ``bodies``, ``batch`` and
    its measurement (or ``skipped``: why not)."""

    def __init__(self) -> None:
        self.cells: list[dict] = []
        self.net, self.hidden = "", []
        self.start = time.perf_counter()

    def use_net(self, hidden: list[int], name: str | None = None) -> None:
        self.net, self.hidden = name or net_name(hidden), hidden

    def emit(self, kind: str, tag: dict, **values: object) -> None:
        self.cells.append({"net": self.net, "hidden": self.hidden, "kind": kind, **tag, **values})
        done = f"skipped: {values['skipped']}" if values.get("skipped") else \
            f"{fmt_rate(values['rate'])} {values['unit']}/s, {values['s_per_iter'] * 1e3:.3g} ms/it, " \
            f"peak {fmt_mb(values['peak_mb'])} MB"
        print(f"[{time.perf_counter() - self.start:6.1f}s] {self.net} N={tag['bodies']} {kind} B={tag['batch']}: {done}",
              file=sys.stderr, flush=True)

    def get(self, net: str, kind: str, bodies: int, batch: int | None = None) -> dict | None:
        for c in self.cells:
            if c["net"] == net and c["kind"] == kind and c["bodies"] == bodies and (batch is None or c["batch"] == batch):
                return None if c.get("skipped") else c
        return None

    def rate(self, net: str, kind: str, bodies: int, batch: int | None = None) -> float | None:
        c = self.get(net, kind, bodies, batch)
        return None if c is None else c["rate"]

    def ratio(self, net: str, kind: str, bodies: int, batch: int | None, ref: str, ref_batch: int | None = None,
              ref_bodies: int | None = None) -> float | None:
        """Rate of ``kind`` over the rate of ``ref`` (same net; bodies unless ``ref_bodies``)."""
        fast = self.rate(net, kind, bodies, batch)
        slow = self.rate(net, ref, bodies if ref_bodies is None else ref_bodies, ref_batch)
        return fast / slow if fast and slow else None
