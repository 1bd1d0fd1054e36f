"""``aits simulate``: integrate a system with learned and classical dt policies and compare them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from aits import jsonio
from aits.cli.app import DeviceOpt, JsonOpt, command

SystemOpt = Annotated[str, typer.Option("--system", "-S", help="Initial-condition generator (see aits plugins) "
                                        "or a .csv/.npy file of bodies.")]
ParamOpt = Annotated[Optional[list[str]], typer.Option("--param", "-p",
                                                      help="Generator parameter key=value (repeatable).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint",
                                                       help="Trained policy (adds the learned policy).")]
PolicyOpt = Annotated[Optional[list[str]], typer.Option(
    "--policy", help="NAME or NAME=VALUE of its parameter (repeatable; default: every baseline, plus learned "
    "with --checkpoint). With --target-error, VALUE is the search's first guess.")]
OptionOpt = Annotated[Optional[list[str]], typer.Option("--option", "-O",
                                                       help="Policy option POLICY.KEY=VALUE (repeatable).")]
TargetOpt = Annotated[Optional[float], typer.Option(
    "--target-error", help="Compare at equal accuracy: search each policy's parameter for the fewest steps "
    "with max |dE/E0| <= this.")]
PeriodsOpt = Annotated[Optional[float], typer.Option("--periods", help="Duration in orbital periods (default 10).")]
TimeOpt = Annotated[Optional[float], typer.Option("--time", help="Duration in time units.")]
IntegratorOpt = Annotated[str, typer.Option("--integrator", help="Integrator plugin.")]
GOpt = Annotated[float, typer.Option("--G", help="Gravitational constant.")]
SofteningOpt = Annotated[float, typer.Option("--softening", help="Plummer softening length.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for random initial conditions.")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", help="Step cap for any one run.")]
CompileOpt = Annotated[Optional[bool], typer.Option(
    "--compile/--no-compile", help="Compile the integration loop (torch.compile): 5-30x faster steps after "
    "5-60 s of compilation. Default: only runs that are long enough to gain.")]
ReferenceOpt = Annotated[Optional[list[str]], typer.Option(
    "--reference", help="Also run this outside integrator on the same system at its own setting, e.g. "
    "rebound_ias15 from plugins/aits-rebound (repeatable; see aits plugins).")]
PlotOpt = Annotated[Optional[Path], typer.Option("--plot",
                                                 help="Write a figure (PNG): |dE/E0| and dt vs time, orbit.")]


@command("simulate")
def simulate_cli(system: SystemOpt = "kepler_binary", param: ParamOpt = None, checkpoint: CheckpointOpt = None,
                 policy: PolicyOpt = None, option: OptionOpt = None, target_error: TargetOpt = None,
                 periods: PeriodsOpt = None, time: TimeOpt = None, integrator: IntegratorOpt = "leapfrog",
                 G: GOpt = 1.0, softening: SofteningOpt = 0.0, seed: SeedOpt = 0, max_steps: MaxStepsOpt = 5_000_000,
                 as_json: JsonOpt = False, plot: PlotOpt = None, device: DeviceOpt = None,
                 compile: CompileOpt = None, reference: ReferenceOpt = None) -> None:
    """Integrate a system with dt policies; report steps, energy error, drifts and wall time of each."""
    from aits import registry
    from aits.cli.progress import make_console
    from aits.errors import UserError
    from aits.simulation.compare import compare
    from aits.simulation.setup import choose_policies, make_setup, parse_assignments

    if max_steps < 1:
        raise UserError(f"--max-steps must be >= 1, got {max_steps}")
    numbers = {"--target-error": target_error, "--periods": periods, "--time": time, "--G": G, "--softening": softening}
    for flag, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
    if target_error is not None and not target_error > 0:
        raise UserError(f"--target-error must be > 0, got {target_error}")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'aits[plot]'") from None
    params = parse_assignments(param, "--param")
    if Path(system).suffix in (".csv", ".npy"):
        system, params = "from_file", {**params, "path": system}
    setup, info = make_setup(system, params, integrator=integrator, G=G, softening=softening, time=time,
                             periods=periods, seed=seed, device=device or "cpu")
    choices = choose_policies(policy, option, checkpoint)
    plugins = registry.get_registry()
    if reference and not plugins.names("reference"):
        raise UserError("--reference: no reference integrator is installed (plugins/aits-rebound provides "
                        "rebound_ias15: pip install -e plugins/aits-rebound)")
    references = [plugins.get("reference", name) for name in reference or []]
    err = make_console(stderr=True)
    report = compare(setup, info, choices, target_error=target_error, max_steps=max_steps,
                     progress=lambda message: err.print(f"[dim]{message}[/]"), compiled=compile,
                     references=references)
    if plot is not None:
        from aits.plotting import plot_report

        err.print(f"plot written to {plot_report(report, plot)}")
    if as_json:
        print(jsonio.dumps(report.to_json(), indent=2))
        return
    console = make_console(stderr=False)
    console.print(results_table(report))
    comparison = report.comparison()
    if comparison:
        console.print(f"learned / best baseline ({comparison['best_baseline']}): "
                      f"[bold]{comparison['step_ratio']:.3f}[/] × the steps, "
                      f"{comparison['force_evaluation_ratio']:.3f} × the force evaluations "
                      f"(vs {comparison['best_baseline_by_force_evaluations']}) at max |ΔE/E0| ≤ {target_error:g}")
        if comparison["wall_time_ratio"] is not None:
            console.print(f"wall time at that accuracy: {comparison['wall_time_ratio']:.3f} × the fastest baseline "
                          f"({comparison['best_baseline_by_wall_time']})")


def results_table(report):
    """The rich table of a :class:`aits.simulation.compare.Report`."""
    from rich.table import Table

    info = report.system
    duration = f"{info.periods:g} periods" if info.periods else f"t = {info.t_end:g}"
    target = f", equal accuracy max |ΔE/E0| ≤ {report.target_error:g}" if report.target_error is not None else ""
    table = Table(title=f"{info.generator} (N={info.bodies}, {duration}, {report.integrator}){target}")
    for column in ("policy", "setting", "steps", "force evals", "max |ΔE/E0|", "final |ΔE/E0|", "|ΔP|", "|ΔL|",
                   "wall s", "µs/step"):
        table.add_column(column, justify="left" if column in ("policy", "setting") else "right")
    if report.target_error is not None:
        table.add_column("cheaper failing", justify="right")
    for e in report.entries:
        r = e.result
        if r is None:
            table.add_row(e.label, f"[red]{e.error}[/]")
            continue
        status = "" if r.status == "finished" else f" [red]({r.status} at t={r.end_time:.4g})[/]"
        row = [e.label + status, f"{e.spec.parameter}={r.value:.4g}", f"{r.steps:,}", f"{r.force_evaluations:,.0f}",
               f"{r.max_error:.2e}", f"{r.final_error:.2e}", f"{r.momentum_drift:.1e}",
               f"{r.angular_momentum_drift:.1e}", f"{e.wall_time_s:.2f}{'~' if e.wall_time_estimated else ''}",
               f"{1e6 * e.step_cost_s:.1f}" if e.step_cost_s is not None else ""]
        if report.target_error is not None:
            failing = (e.search or {}).get("cheaper_failing")
            row.append(f"{failing['value']:.4g} ({failing['steps']:,} steps, {failing['max_rel_energy_error']:.2e})"
                       if failing else "")
        table.add_row(*row)
    for ref in report.references:
        r = ref.result
        table.add_row(f"{ref.label} (reference)", r.setting, f"{r.steps:,}", f"{r.force_evaluations:,}",
                      f"{r.max_error:.2e}", f"{r.final_error:.2e}", "", "", f"{r.wall_time_s:.3f}",
                      *([""] if report.target_error is not None else []))
    if any(e.wall_time_estimated for e in report.entries):
        table.caption = "~ wall time scaled from a timed solo run of the first steps"
    return table
