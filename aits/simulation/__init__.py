"""Evaluation of dt policies (``aits simulate``).

* :mod:`~aits.simulation.problem` — what is integrated (systems, end times, integrator) and the
  policy to step them;
* :mod:`~aits.simulation.engine` — the batched integration loop (each system its own parameter
  value and end time), energy measured every step; systems leave the batch as they finish;
* :mod:`~aits.simulation.stepper` — the loop's carried state and its steps;
* :mod:`~aits.simulation.chunks` — the loop body, eager or compiled ``CHUNK`` steps per call;
* :mod:`~aits.simulation.trace` — the per-window record of a run (``--plot``);
* :mod:`~aits.simulation.results` — one result per system;
* :mod:`~aits.simulation.search` — ``--target-error``: the cheapest parameter value that keeps
  max |dE/E0| within a target, candidates run side by side;
* :mod:`~aits.simulation.setup` — systems, durations (time or orbital periods) and policy choices
  from user input;
* :mod:`~aits.simulation.compare` — every policy on one setup, the report and the learned-vs-best
  baseline comparison.

The physics it measures with (cached pair tables, the energy meter) lives in :mod:`aits.physics`.
"""
