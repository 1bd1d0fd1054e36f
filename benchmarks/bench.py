#!/usr/bin/env python
"""aits performance benchmark: Part 1, Part 2 (with a per-sample reference loop), simulation, peak
memory, how the cost grows with the minibatch M and the number of bodies N, and the issue-16
targets measured side by side (see benchmarks/README.md).

    python benchmarks/bench.py                        # everything (about 20 minutes on 2 CPU cores)
    python benchmarks/bench.py --only targets         # the targets alone (about 5 minutes)
    python benchmarks/bench.py --quick                # smoke test, 1-2 minutes
    python benchmarks/bench.py --json out.json        # also write every measurement as JSON
    python benchmarks/bench.py --device cuda          # on a GPU (skips cleanly without CUDA)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from aitsbench import part1, part2, report, simulate, targets
from aitsbench.measure import Clock
from aitsbench.results import Results

PARTS = ("part1", "part2", "simulate", "targets")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small subset for smoke testing (1-2 minutes)")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON to PATH ('-' = stdout)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu); skips cleanly without CUDA")
    p.add_argument("--threads", type=int, help="torch CPU threads, passed as the config key threads "
                                                "(default: aits's own default; 0 = torch's choice)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--nets", nargs="+", metavar="H1,H2,..", help="hidden layer sizes (default 64,64 256,256,256)")
    p.add_argument("--bodies", nargs="+", type=int, metavar="N", help="numbers of bodies (default 2 3 8 32 128)")
    p.add_argument("--minibatch", nargs="+", type=int, metavar="M", help="Part 2 minibatches (default 64 512 4096 65536)")
    p.add_argument("--part1-batch", nargs="+", type=int, metavar="B", help="live systems in Part 1 (default 64)")
    p.add_argument("--sim-batch", nargs="+", type=int, metavar="B", help="simulated batch sizes (default 1 1024)")
    p.add_argument("--min-time", type=float, help="seconds timed per cell (default 0.5, --quick 0.2)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls per cell (default 3; fewer when slow)")
    p.add_argument("--ref-samples", type=int, help="samples timed in the per-sample reference loop (default 200)")
    p.add_argument("--ref-chunk", type=int, default=50, help="reference-loop samples per optimizer step (default 50)")
    p.add_argument("--ref-max-time", type=float, default=5.0, help="stop the reference loop after this many seconds")
    p.add_argument("--max-pairs", type=int, help="skip cells with B*N^2 above this (default 2**23; memory and time)")
    p.add_argument("--sim-compile", default="on", choices=("on", "off"),
                   help="simulate with the engine's compiled loop (on, default; compiling takes ~5-60 s per cell, "
                        "not timed) or eagerly (off)")
    p.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts (default: all)")
    p.add_argument("--target-net", default="64,64", metavar="H1,H2,..",
                   help="hidden layer sizes of the network in the targets (default 64,64, the issue's)")
    p.add_argument("--compile", action="store_true",
                   help="also time Part 1 rejections and Part 2 at M=512 with the config key compile on (each cell "
                        "compiles first: tens of seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override, e.g. --set features.adapter=history (repeatable)")
    args = p.parse_args(argv)
    quick = args.quick
    args.nets = [[int(x) for x in n.split(",")] for n in (args.nets or (["64,64"] if quick else ["64,64", "256,256,256"]))]
    args.target_net = [int(x) for x in args.target_net.split(",")]
    args.bodies = args.bodies or ([2, 8] if quick else [2, 3, 8, 32, 128])
    args.minibatch = args.minibatch or ([64, 512, 4096] if quick else [64, 512, 4096, 65536])
    args.part1_batch = args.part1_batch or [64]
    args.sim_batch = args.sim_batch or [1, 1024]
    args.min_time = args.min_time or (0.2 if quick else 0.5)
    args.ref_samples = args.ref_samples if args.ref_samples is not None else (50 if quick else 200)
    args.ref_chunk = min(args.ref_chunk, max(args.ref_samples, 1))
    if quick:
        args.ref_max_time = min(args.ref_max_time, 2.0)
    args.max_pairs = args.max_pairs or 2**23
    args.only = set(args.only or (PARTS[:3] if quick else PARTS))
    return args


def environment(args: argparse.Namespace) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), None)
    except OSError:
        cpu = None
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": args.device, "dtype": args.dtype,
           "cpu_count": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), "git_commit": commit,
           "quick": args.quick, "min_time_s": args.min_time, "max_pairs": args.max_pairs, "overrides": args.set,
           "loadavg_start": os.getloadavg()}
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return env


def run(args: argparse.Namespace, clock: Clock, res: Results) -> None:
    for hidden in args.nets if args.only & {"part1", "part2", "simulate"} else []:
        res.use_net(hidden)
        for n in args.bodies:
            if "part1" in args.only:
                for batch in args.part1_batch:
                    part1.cells(args, clock, res, hidden, n, batch)
            if "part2" in args.only:
                part2.cells(args, clock, res, hidden, n)
            if "simulate" in args.only:
                simulate.cells(args, clock, res, hidden, n)
            gc.collect()
    if "targets" in args.only:
        targets.cells(args, clock, res)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        reason = f"--device {args.device}: CUDA is not available in this torch ({torch.__version__}); skipped"
        print(reason)
        if args.json:
            write_json(args.json, {"skipped": True, "reason": reason})
        return 0
    env = environment(args)
    print(f"aits benchmark: torch {env['torch']}, {args.device}, {args.dtype}, {env['cpu_count']} CPUs, "
          f"load {env['loadavg_start'][0]:.2f}", file=sys.stderr, flush=True)
    res = Results()
    t_start = time.perf_counter()
    run(args, Clock(torch.device(args.device)), res)
    env.update(threads=torch.get_num_threads(), loadavg_end=os.getloadavg(), wall_s=time.perf_counter() - t_start,
               process_maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    console = Console(file=sys.stderr if args.json == "-" else sys.stdout, width=200)
    console.print(f"aits benchmark -- torch {env['torch']}, device {args.device}"
                  + (f" ({env['gpu']})" if "gpu" in env else "")
                  + f", {args.dtype}, {env['threads']} threads on {env['cpu_count']} CPUs ({env['cpu']}), "
                  f"commit {env['git_commit']}, {env['wall_s']:.0f} s, load average {env['loadavg_start'][0]:.2f} -> "
                  f"{env['loadavg_end'][0]:.2f}, process max RSS {env['process_maxrss_mb']:.0f} MB", highlight=False)
    spreads = sorted(c["spread"] for c in res.cells if c.get("spread"))
    if spreads:
        env["median_window_spread"] = spreads[len(spreads) // 2]
        console.print(f"noise: the rate of a cell's fastest timing window over its slowest, median over cells: "
                      f"{env['median_window_spread']:.2f} (about 1.0-1.1 on a quiet machine)", highlight=False)
    if max(env["loadavg_start"][0], env["loadavg_end"][0]) > (os.cpu_count() or 1) * 0.75 + 0.5:
        console.print("WARNING: the machine was busy (load average above the CPU count); timings are noisy.")
    derived = report.render(args, res, console)
    if args.json:
        write_json(args.json, {"environment": env, "cells": res.cells, **derived})
    return 0


def write_json(path: str, data: dict) -> None:
    text = json.dumps(data, indent=1, default=float)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
