"""A fixed-capacity replay buffer of accepted steps (pre-step state, its history window, dt)."""

from __future__ import annotations

import torch

from aits.physics import Systems

FIELDS = ("pos", "vel", "mass", "acc", "energy", "history", "dt")


class ReplayBuffer:
    """Ring buffer: once ``capacity`` samples are held, each new one replaces the oldest."""

    def __init__(self, capacity: int, bodies: int, dims: int, history_len: int, memory_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.capacity = capacity
        kw = {"dtype": dtype, "device": device}
        self.data = {
            "pos": torch.zeros(capacity, bodies, dims, **kw),
            "vel": torch.zeros(capacity, bodies, dims, **kw),
            "mass": torch.zeros(capacity, bodies, **kw),
            "acc": torch.zeros(capacity, bodies, dims, **kw),
            "energy": torch.zeros(capacity, **kw),
            "history": torch.zeros(capacity, history_len, memory_dim, **kw),
            "dt": torch.zeros(capacity, **kw),
        }
        self.size = 0
        self.cursor = 0  # where the next sample goes

    def add(self, s: Systems, energy: torch.Tensor, history: torch.Tensor, dt: torch.Tensor) -> None:
        """Store a batch of samples (detached), overwriting the oldest when full."""
        k = s.batch
        if k == 0:
            return
        slots = (self.cursor + torch.arange(k, device=s.pos.device)) % self.capacity
        values = {"pos": s.pos, "vel": s.vel, "mass": s.mass, "acc": s.acc, "energy": energy, "history": history, "dt": dt}
        if k > self.capacity:  # only the newest `capacity` of them survive
            slots, values = slots[-self.capacity :], {n: v[-self.capacity :] for n, v in values.items()}
        for name, value in values.items():
            self.data[name][slots] = value.detach()
        self.cursor = (self.cursor + k) % self.capacity
        self.size = min(self.size + k, self.capacity)

    def indices(self, count: int, generator: torch.Generator, pad: bool = False) -> torch.Tensor:
        """Slots of ``min(count, size)`` distinct random samples.

        With ``pad``, always ``count`` slots: when the buffer holds fewer, the distinct samples come
        first and repeat to fill the rest (fixed shapes for a compiled step)."""
        idx = torch.randperm(self.size, generator=generator)[:count]
        if pad and 0 < idx.numel() < count:
            idx = idx.repeat(-(-count // idx.numel()))[:count]
        return idx.to(self.data["pos"].device)

    def gather(self, idx: torch.Tensor) -> tuple[Systems, torch.Tensor, torch.Tensor]:
        """The samples in slots ``idx``: (states, their energies, their history windows)."""
        d = {name: self.data[name][idx] for name in ("pos", "vel", "mass", "acc", "energy", "history")}
        s = Systems(d["pos"], d["vel"], d["mass"], d["acc"], torch.zeros_like(d["energy"]))
        return s, d["energy"], d["history"]

    def state_dict(self) -> dict:
        """The held samples only: copies of the first ``size`` rows (a slice would be saved with the
        whole capacity it views)."""
        return {"capacity": self.capacity, "size": self.size, "cursor": self.cursor,
                **{name: t[: self.size].to("cpu", copy=True) for name, t in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        for name in FIELDS:
            self.data[name][: state[name].shape[0]] = state[name].to(self.data[name])
