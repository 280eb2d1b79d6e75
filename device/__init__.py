"""synthseal device agent: label, seal and log content at the source."""

from .. import __version__  # one version for the whole distribution

__all__ = ["__version__"]
