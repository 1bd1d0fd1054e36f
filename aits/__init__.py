"""aits — learn the time step of a gravitational N-body integrator."""

__version__ = "0.1.0"
