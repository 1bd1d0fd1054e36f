"""Wall time of one simulation step of each dt policy, by number of bodies, measured side by side.

    python benchmarks/step_cost.py --checkpoint runs/default/model.pt [--bodies 2 8 16 32 64]
        [--rounds 5] [--steps 512] [--eager]

Single systems (B = 1; a Kepler binary at N = 2, a random cluster otherwise), each policy at a fixed
setting, the integration loop compiled (as ``aits simulate`` compiles long runs) unless --eager.
Each policy is compiled first (not timed), then the policies take turns for ``--rounds`` rounds of
``--steps`` steps; the fastest round of each is reported, with its ratio to the free-fall rule's,
so that load on the machine hits every policy alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aits.simulation.engine import integrate
from aits.simulation.setup import choose_policies, make_setup

POLICIES = {  # label: (policy, its options, its setting)
    "freefall": ("freefall", [], 0.01), "freefall_symmetric": ("freefall_symmetric", [], 0.01),
    "aarseth": ("aarseth", [], 1e-3), "learned": ("learned", [], 0.3),
    "learned_symmetric": ("learned", ["learned.symmetric=true"], 0.3),
}


def per_step(setup, spec, value: float, steps: int, compiled: bool) -> float:
    far = setup.__class__(setup.systems, torch.full((1,), 1e300, dtype=torch.float64), setup.gravity,
                          setup.integrator)  # never arrives: exactly ``steps`` steps
    out = integrate(far, spec, torch.tensor([value], dtype=torch.float64), max_steps=steps,
                    check_every=min(128, steps), compiled=compiled)
    return out.iteration_cost_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--bodies", type=int, nargs="+", default=[2, 8, 16, 32, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--eager", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    compiled = not args.eager
    print(f"us per step, B = 1, {'compiled' if compiled else 'eager'}; fastest of {args.rounds} rounds of "
          f"{args.steps} steps (ratio to freefall)")
    for n in args.bodies:
        setup, _ = (make_setup("kepler_binary", {"e": 0.5}) if n == 2 else
                    make_setup("cluster", {"n": n}, time=1.0))
        specs = {}
        for label, (name, options, value) in POLICIES.items():
            checkpoint = Path(args.checkpoint) if name == "learned" else None
            specs[label] = choose_policies([name], options, checkpoint)[0].spec
            per_step(setup, specs[label], value, 2 * 8, compiled)  # compile (or warm up), not timed
        best = dict.fromkeys(POLICIES, float("inf"))
        for _ in range(args.rounds):
            for label, (_, _, value) in POLICIES.items():
                best[label] = min(best[label], per_step(setup, specs[label], value, args.steps, compiled))
        cells = "  ".join(f"{label} {1e6 * t:7.1f} ({t / best['freefall']:.2f})" for label, t in best.items())
        print(f"N={n:3d}  {cells}", flush=True)


if __name__ == "__main__":
    main()
