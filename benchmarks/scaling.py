"""Training on K processes against one: epoch time and Part 2 samples/s for each K, measured side
by side in one run, with the share of the time spent in collectives (gloo on the CPU, NCCL on GPUs).

    python benchmarks/scaling.py                                  # K = 1, 2; N = 2; M = 64 ... 16384
    python benchmarks/scaling.py --processes 1 2 4 --bodies 2 32 --minibatch 512 4096 --json scaling.json

Each K runs in its own K spawned processes (one torch thread each, as ``aits train`` under torchrun):
K = 1 is the plain single-process trainer, K > 1 the :class:`~aits.training.distributed.Distributed`
strategy of ``torchrun``. Every cell is the same global work for every K (the same config, global
batch and minibatch). The "in collectives" share is rank 0's time inside ``torch.distributed`` calls
over its wall time, waiting for slower processes included.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from aitsbench.builders import NEVER, make_batch, workload

from aits.config import load_config
from aits.training import distributed
from aits.training.build import build_trainer
from aits.training.strategy import SingleProcess, Strategy
from aits.training.trainer import Trainer


class Timed(distributed.Distributed):
    """The torchrun strategy, counting the seconds spent in collectives."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def _collective(self, call):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super()._collective(call)
        finally:
            self.seconds += time.perf_counter() - start


def comm_seconds(strategy: Strategy) -> float:
    return strategy.seconds if isinstance(strategy, Timed) else 0.0


def barrier_time(strategy: Strategy) -> float:
    """The clock after every process got here (a one-scalar all-reduce)."""
    strategy.reduce_boolean_decision(True)
    return time.perf_counter()


def epoch_cell(strategy: Strategy, args: argparse.Namespace, count: int) -> dict:
    """Seconds per training epoch (the benchmark's :func:`~aitsbench.builders.workload`: ``count`` binaries, minibatch
    ``--epoch-minibatch``), after ``--warmup-epochs``."""
    config = load_config(None, [*workload(2, count, replay_batch_size=args.epoch_minibatch), f"device={args.device}",
                                *args.set])
    trainer = build_trainer(config, strategy=strategy)
    for _ in range(args.warmup_epochs):
        trainer.run_epoch()
    comm0, start = comm_seconds(strategy), barrier_time(strategy)
    for _ in range(args.epochs):
        trainer.run_epoch()
    wall = barrier_time(strategy) - start
    return {"epoch_s": wall / args.epochs, "comm_share": (comm_seconds(strategy) - comm0) / wall}


def filled(strategy: Strategy, args: argparse.Namespace, n: int, m: int) -> Trainer:
    """A trainer whose replay buffer holds ``m`` fresh systems, shared among the processes as Part 1
    shares them (every process generates all, adds its own rows in rank order)."""
    config = load_config(None, [*workload(n, max(strategy.world_size, 1), **NEVER, replay_capacity=m,
                                          replay_batch_size=m, max_generalize_iters=args.iters),
                                f"device={args.device}", *args.set])
    trainer = build_trainer(config, strategy=strategy)
    s = make_batch(trainer, n, m)
    rows = strategy.shard(m)
    mine = s.index(rows)
    trainer.population.buffer.add(mine, trainer.gravity.energy(mine), trainer.adapter.empty_history(mine), torch.zeros_like(mine.time),
                 rows.start, m)
    return trainer


def part2_cell(strategy: Strategy, args: argparse.Namespace, n: int, m: int) -> dict:
    """Part 2 samples/s at global minibatch ``m``: ``--iters`` iterations per call, best of ``--repeat`` calls."""
    trainer = filled(strategy, args, n, m)
    trainer.generalize()  # warm-up
    best = None
    for _ in range(args.repeat):
        comm0, start = comm_seconds(strategy), barrier_time(strategy)
        stats = trainer.generalize()
        wall = barrier_time(strategy) - start
        if best is None or wall < best[0]:
            best = (wall, comm_seconds(strategy) - comm0, stats["iterations"])
    wall, comm, iterations = best
    return {"samples_per_s": m * iterations / wall, "iteration_ms": 1e3 * wall / iterations, "comm_share": comm / wall}


def worker(rank: int, world_size: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if world_size == 1:
        strategy: Strategy = SingleProcess()
    else:
        distributed.launched()
        strategy = Timed()
    results = []
    for count in args.systems:
        results.append({"cell": "epoch", "bodies": 2, "systems": count, **epoch_cell(strategy, args, count)})
    for n in args.bodies:
        for m in args.minibatch:
            if m * n * n <= args.max_pairs:
                results.append({"cell": "part2", "bodies": n, "minibatch": m, **part2_cell(strategy, args, n, m)})
    if strategy.is_global_zero:
        Path(out).write_text(json.dumps(results))
    distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(k: int, args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "results.json")
        mp.spawn(worker, args=(k, free_port(), args, out), nprocs=k)
        return json.loads(Path(out).read_text())


def report(by_k: dict[int, list[dict]]) -> list[str]:
    ks = sorted(by_k)
    lines = [f"{'cell':<28}" + "".join(f"{f'K={k}':>22}" for k in ks) + "".join(f"{f'K={k}/K=1':>10}" for k in ks[1:])]
    for i, first in enumerate(by_k[ks[0]]):
        if first["cell"] == "epoch":
            name, key, unit = f"epoch, {first['systems']} binaries", "epoch_s", "s"
        else:
            name, key, unit = f"part2 N={first['bodies']} M={first['minibatch']}", "samples_per_s", "/s"
        row = f"{name:<28}"
        for k in ks:
            r = by_k[k][i]
            comm = f" ({100 * r['comm_share']:.0f}% comm)" if k > 1 else ""
            row += f"{r[key]:>10.4g}{unit:<2}{comm:>10}"
        for k in ks[1:]:
            ratio = by_k[k][i][key] / first[key]
            row += f"{(1 / ratio if key == 'epoch_s' else ratio):>9.2f}x"  # speed-up either way
        lines.append(row)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--systems", type=int, nargs="*", default=[64, 1024], help="epoch cells: global numbers of binaries")
    ap.add_argument("--epoch-minibatch", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup-epochs", type=int, default=2)
    ap.add_argument("--bodies", type=int, nargs="*", default=[2])
    ap.add_argument("--minibatch", type=int, nargs="*", default=[64, 512, 4096, 16384])
    ap.add_argument("--iters", type=int, default=10, help="Part 2 iterations per timed call")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-pairs", type=int, default=2**22)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", default=[], help="any config override, e.g. model.hidden=[256,256]")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    by_k = {k: run(k, args) for k in args.processes}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
          "speed-ups are K=1 time / K time (epochs) and K rate / K=1 rate (part2)")
    print("\n".join(report(by_k)))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": {str(k): v for k, v in by_k.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
