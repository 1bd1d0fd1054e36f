"""A fixed-capacity replay buffer of accepted steps (pre-step state, its history window, dt)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aits.physics import Systems

FIELDS = ("pos", "vel", "mass", "acc", "energy", "history", "dt")  # the samples a checkpoint or data set holds
CACHED = ("features", "timescale")  # saved too (a resumed run reads the very numbers); recomputed where absent
FEATURE_PAIRS = 2**20  # body pairs per slice when features are computed for stored samples
Featurize = Callable[[Systems, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class ReplayBuffer:
    """Ring buffer: once ``capacity`` samples are held, each new one replaces the oldest.

    The ring's slots are numbered over all processes of a run; each process stores only the samples
    it holds (:attr:`owned`), in rows of its own (:attr:`row` maps a slot to its row), allocated for
    ``capacity / processes`` samples and grown when a process holds more. In one process the row of
    a slot is the slot.

    With ``featurize`` (a feature adapter's ``features_and_timescale``, a function of the state and
    its history window only), each sample's features and time scale are computed once, when it is
    stored or loaded, and :meth:`gather` returns them: Part 2 draws the same samples many times, and
    their features (Aarseth's derivatives, the closest pair) were ~45% of its time."""

    def __init__(self, capacity: int, bodies: int, dims: int, history_len: int, memory_dim: int,
                 dtype: torch.dtype, device: torch.device, processes: int = 1, featurize: Featurize | None = None,
                 feature_dim: int = 0) -> None:
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
        self.featurize = featurize
        if featurize is not None:
            self.data.update(features=torch.zeros(rows, feature_dim, **kw), timescale=torch.zeros(rows, **kw))
        self.row = torch.full((capacity,), -1, dtype=torch.int64, device=device)  # -1: held by another process
        self.free = torch.arange(rows, device=device)  # rows holding no sample, used in this order
        self.size = 0
        self.cursor = 0  # where the next sample goes

    @property
    def fields(self) -> tuple[str, ...]:
        """What :meth:`state_dict` holds: the samples, and their features when cached."""
        return FIELDS + (CACHED if self.featurize is not None else ())

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
        if self.featurize is not None:
            values["features"], values["timescale"] = self._features(s, history)
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

    def gather(self, idx: torch.Tensor) -> tuple[Systems, torch.Tensor, torch.Tensor,
                                                 tuple[torch.Tensor, torch.Tensor] | None]:
        """The samples in slots ``idx`` (held by this process): (states, their energies, their history
        windows, and with ``featurize`` their features and time scales, else None)."""
        rows = self.row[idx]
        s, energy, history = self._samples(rows)
        cached = None if self.featurize is None else (self.data["features"][rows], self.data["timescale"][rows])
        return s, energy, history, cached

    def _samples(self, rows: torch.Tensor) -> tuple[Systems, torch.Tensor, torch.Tensor]:
        """The samples in storage rows ``rows``: (states, their energies, their history windows)."""
        d = {name: self.data[name][rows] for name in ("pos", "vel", "mass", "acc", "energy", "history")}
        return Systems(d["pos"], d["vel"], d["mass"], d["acc"], torch.zeros_like(d["energy"])), d["energy"], d["history"]

    def state_dict(self) -> dict:
        """The samples by slot: the first ``size`` slots (copies), zero in the slots that another
        process holds."""
        rows = self.row[: self.size]
        held = rows >= 0
        state = {"capacity": self.capacity, "size": self.size, "cursor": self.cursor}
        for name in self.fields:
            t = self.data[name]
            state[name] = torch.where(held.view(-1, *[1] * (t.dim() - 1)), t[rows.clamp_min(0)], 0).to("cpu", copy=True)
        return state

    def load_state_dict(self, state: dict, rank: int = 0, world_size: int = 1) -> None:
        """Load every sample of ``state`` that this process holds: the slots ``rank`` mod ``world_size``;
        their features as saved, or computed when the state has none."""
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        slots = torch.arange(self.capacity, device=self.row.device)
        mine = slots[(slots < self.size) & (slots % world_size == rank)]
        self.row.fill_(-1)
        rows = self.take(torch.arange(self.data["energy"].shape[0], device=self.row.device), mine.numel())
        self.row[mine] = rows
        saved = self.featurize is not None and all(name in state for name in CACHED)
        for name in self.fields if saved else FIELDS:
            self.data[name][rows] = state[name][mine.cpu()].to(self.data[name])
        if self.featurize is not None and not saved and rows.numel():  # a data set or checkpoint of an older aits
            s, _, history = self._samples(rows)
            self.data["features"][rows], self.data["timescale"][rows] = self._features(s, history)

    @torch.no_grad()
    def _features(self, s: Systems, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``featurize`` of every sample, in slices of at most ``FEATURE_PAIRS`` body pairs (a loaded
        buffer holds up to ``capacity`` samples)."""
        size = max(1, FEATURE_PAIRS // s.bodies**2)
        parts = [self.featurize(s.index(slice(i, i + size)), history[i : i + size]) for i in range(0, s.batch, size)]
        if not parts:
            return self.data["features"][:0], self.data["timescale"][:0]
        return torch.cat([f for f, _ in parts]), torch.cat([t for _, t in parts])
