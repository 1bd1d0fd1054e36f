"""The per-window record of a batched run (``aits simulate --plot``)."""

from __future__ import annotations

import torch

from aits.physics import Systems


class Trace:
    """Per-window records of a batched run, at most ``2 * cap`` windows of ``stride`` observations
    each (an observation: one eager step or one compiled chunk; adjacent windows merge and the
    stride doubles when full): time and step count at the window's end, the highest and lowest
    energy inside it, and the positions at its end."""

    def __init__(self, e0: torch.Tensor, cap: int = 2048) -> None:
        self.e0, self.cap, self.stride, self.count = e0, cap, 1, 0
        self.rows = list(range(len(e0)))  # the original index of each system still recorded
        self.hi: torch.Tensor | None = None
        self.lo: torch.Tensor | None = None
        self.records: list[tuple[torch.Tensor, ...]] = []  # (time, steps, hi, lo, pos)

    def select(self, keep: torch.Tensor) -> None:
        """Keep recording only the systems ``keep`` (positions in the current batch)."""
        self.rows = [self.rows[i] for i in keep.tolist()]
        self.records = [tuple(x[keep] for x in record) for record in self.records]
        self.e0 = self.e0[keep]
        if self.hi is not None and self.lo is not None:
            self.hi, self.lo = self.hi[keep], self.lo[keep]

    def observe(self, s: Systems, steps: torch.Tensor, hi: torch.Tensor, lo: torch.Tensor) -> None:
        """Record the state after one or more steps whose highest and lowest energies are hi, lo."""
        if self.hi is None or self.lo is None:
            self.hi, self.lo = hi, lo
        else:
            self.hi, self.lo = torch.maximum(self.hi, hi), torch.minimum(self.lo, lo)
        self.count += 1
        if self.count == self.stride:
            self.close_window(s, steps)

    def close_window(self, s: Systems, steps: torch.Tensor) -> None:
        if self.hi is None or self.lo is None:
            return
        self.records.append((s.time, steps.clone(), self.hi, self.lo, s.pos))
        self.hi, self.lo, self.count = None, None, 0
        if len(self.records) >= 2 * self.cap:
            self.records = [(t, n, torch.maximum(h0, h1), torch.minimum(l0, l1), x)
                            for (_, _, h0, l0, _), (t, n, h1, l1, x) in zip(self.records[0::2], self.records[1::2])]
            self.stride *= 2

    def row(self, index: int) -> dict[str, torch.Tensor]:
        """One system's record (CPU tensors): ``time`` at the end of each window, the mean ``dt`` and
        the largest |dE/E0| in it, ``pos`` (W, N, D) at its end; windows after its last step dropped.
        ``index`` is the system's place in the batch as it started."""
        at = self.rows.index(index)
        t, steps, hi, lo, pos = (torch.stack([r[k][at] for r in self.records]).cpu() for k in range(5))
        e0 = self.e0[at].cpu()
        prev_steps = torch.cat([steps.new_zeros(1), steps[:-1]])
        prev_t = torch.cat([t.new_zeros(1), t[:-1]])
        keep = steps > prev_steps
        dt = (t - prev_t) / (steps - prev_steps).clamp_min(1)
        error = torch.maximum((hi - e0).abs(), (lo - e0).abs()) / e0.abs()
        return {"time": t[keep], "dt": dt[keep], "error": error[keep], "pos": pos[keep]}
