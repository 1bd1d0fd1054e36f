"""The pieces of ``benchmarks/bench.py``, one concern each.

* :mod:`.measure` — wall-clock timing in windows and per-cell peak memory;
* :mod:`.builders` — trainers and systems for a cell (config overrides, filled replay buffers);
* :mod:`.part1`, :mod:`.part2`, :mod:`.simulate` — the cells of each workload;
* :mod:`.targets` — the issue-16 targets, each measured against its reference in the same run;
* :mod:`.results` — the measured cells; :mod:`.report` — tables (rich) and power-law fits (numpy).
"""
