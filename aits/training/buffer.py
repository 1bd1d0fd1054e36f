"""A fixed-capacity replay buffer of accepted steps (pre-step state, its history window, dt)."""

from __future__ import annotations

import torch

from aits.physics import Systems

FIELDS = ("pos", "vel", "mass", "acc", "energy", "history", "dt")


class ReplayBuffer:
    """Ring buffer: once ``capacity`` samples are held, each new one replaces the oldest.

    The ring's slots are numbered over all processes of a run; each process stores only the samples
    it holds (:attr:`owned`), in rows of its own (:attr:`row` maps a slot to its row), allocated for
    ``capacity / processes`` samples and grown when a process holds more. In one process the row of
    a slot is the slot."""

    def __init__(self, capacity: int, bodies: int, dims: int, history_len: int, memory_dim: int,
                 dtype: torch.dtype, device: torch.device, processes: int = 1) -> None:
        self.capacity = capacity
        rows = -(-capacity // processes)
        kw = {"dtype": dtype, "device": device}
        self.data = {
            "pos": torch.zeros(rows, bodies, dims, **kw),
            "vel": torch.zeros(rows, bodies, dims, **kw),
            "mass": torch.zeros(rows, bodies, **kw),
            "acc": torch.zeros(rows, bodies, dims, **kw),
            "energy": torch.zeros(rows, **kw),
            "history": torch.zeros(rows, history_len, memory_dim, **kw),
            "dt": torch.zeros(rows, **kw),
        }
        self.row = torch.full((capacity,), -1, dtype=torch.int64, device=device)  # -1: held by another process
        self.free = torch.arange(rows, device=device)  # rows holding no sample, used in this order
        self.size = 0
        self.cursor = 0  # where the next sample goes

    @property
    def owned(self) -> torch.Tensor:
        """(capacity,) whether this process holds the sample in each slot."""
        return self.row >= 0

    def add(self, s: Systems, energy: torch.Tensor, history: torch.Tensor, dt: torch.Tensor, offset: int = 0,
            total: int | None = None) -> None:
        """Store a batch of samples (detached), overwriting the oldest when full.

        With several processes the ``s.batch`` samples are rows ``offset`` on of ``total`` samples
        that all processes add together (in rank order): every process advances the ring by ``total``
        and holds only its own rows (:attr:`owned`)."""
        k = s.batch
        total = k if total is None else total
        if total == 0:
            return
        device = self.row.device
        positions = offset + torch.arange(k, device=device)  # in the sequence of all processes' samples
        slots = (self.cursor + positions) % self.capacity
        values = {"pos": s.pos, "vel": s.vel, "mass": s.mass, "acc": s.acc, "energy": energy, "history": history, "dt": dt}
        if total > self.capacity:  # only the newest `capacity` of them survive
            survive = positions >= total - self.capacity
            slots, values = slots[survive], {n: v[survive] for n, v in values.items()}
        written = (self.cursor + torch.arange(max(0, total - self.capacity), total, device=device)) % self.capacity
        released = self.row[written]
        self.row[written] = -1
        rows = self.take(torch.cat([self.free, released[released >= 0]]), slots.numel())
        self.row[slots] = rows
        for name, value in values.items():
            self.data[name][rows] = value.detach()
        self.cursor = (self.cursor + total) % self.capacity
        self.size = min(self.size + total, self.capacity)

    def take(self, free: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` rows from ``free`` (the rest stay free), the storage grown when too few are free."""
        if count > free.numel():
            held = self.data["energy"].shape[0]
            more = max(count - free.numel(), min(held, self.capacity - held))
            for name, t in self.data.items():
                self.data[name] = torch.cat([t, t.new_zeros((more, *t.shape[1:]))])
            free = torch.cat([free, torch.arange(held, held + more, device=free.device)])
        self.free = free[count:]
        return free[:count]

    def indices(self, count: int, generator: torch.Generator, pad: bool = False) -> torch.Tensor:
        """Slots of ``min(count, size)`` distinct random samples.

        With ``pad``, always ``count`` slots: when the buffer holds fewer, the distinct samples come
        first and repeat to fill the rest (fixed shapes for a compiled step)."""
        idx = torch.randperm(self.size, generator=generator)[:count]
        if pad and 0 < idx.numel() < count:
            idx = idx.repeat(-(-count // idx.numel()))[:count]
        return idx.to(self.data["pos"].device)

    def gather(self, idx: torch.Tensor) -> tuple[Systems, torch.Tensor, torch.Tensor]:
        """The samples in slots ``idx`` (held by this process): (states, their energies, their history windows)."""
        rows = self.row[idx]
        d = {name: self.data[name][rows] for name in ("pos", "vel", "mass", "acc", "energy", "history")}
        s = Systems(d["pos"], d["vel"], d["mass"], d["acc"], torch.zeros_like(d["energy"]))
        return s, d["energy"], d["history"]

    def state_dict(self) -> dict:
        """The samples by slot: the first ``size`` slots (copies), zero in the slots that another
        process holds."""
        rows = self.row[: self.size]
        held = rows >= 0
        state = {"capacity": self.capacity, "size": self.size, "cursor": self.cursor}
        for name, t in self.data.items():
            state[name] = torch.where(held.view(-1, *[1] * (t.dim() - 1)), t[rows.clamp_min(0)], 0).to("cpu", copy=True)
        return state

    def load_state_dict(self, state: dict, rank: int = 0, world_size: int = 1) -> None:
        """Load every sample of ``state`` that this process holds: the slots ``rank`` mod ``world_size``."""
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        slots = torch.arange(self.capacity, device=self.row.device)
        mine = slots[(slots < self.size) & (slots % world_size == rank)]
        self.row.fill_(-1)
        rows = self.take(torch.arange(self.data["energy"].shape[0], device=self.row.device), mine.numel())
        self.row[mine] = rows
        for name in FIELDS:
            self.data[name][rows] = state[name][mine.cpu()].to(self.data[name])
