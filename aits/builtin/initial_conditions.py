"""Built-in initial-condition generators."""

from aits.hookspecs import hookimpl
from aits.physics import initial, scenarios


@hookimpl
def aits_register_initial_conditions(register) -> None:
    for generator in (initial.kepler_binary, initial.binary_batch, initial.figure_eight, initial.pythagorean,
                      initial.cluster, initial.from_file, scenarios.hierarchical_triple, scenarios.planetary_system,
                      scenarios.flyby, scenarios.plummer):
        register(generator)
