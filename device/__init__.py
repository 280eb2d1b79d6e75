"""synthseal device agent: label, seal and log content at the source."""

__version__ = "0.1.0"
