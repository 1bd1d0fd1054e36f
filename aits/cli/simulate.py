"""``aits simulate``: integrate a system with learned and classical dt policies."""

from __future__ import annotations

from aits.cli.app import command


@command("simulate")
def simulate_cli() -> None:
    """Integrate a system with the learned policy and classical baselines (not implemented yet)."""
    from aits.errors import RunFailed

    raise RunFailed("aits simulate is not implemented yet")
