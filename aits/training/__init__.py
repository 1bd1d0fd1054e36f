"""Two-phase training: Part 1 (collect) and Part 2 (generalize)."""
