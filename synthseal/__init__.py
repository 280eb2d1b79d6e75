"""synthseal: deep-synthesis labels and provenance applied at the source.

The repository keeps one folder per role (device/, host/, firmware_tools/, models/);
the installed distribution exposes them under this one namespace, so nothing else
lands at the top level of site-packages:

- `synthseal.device`: the device agent and its MicroPython-portable core;
- `synthseal.host`: the field technician's and auditor's tool;
- `synthseal.firmware_tools`: model pipeline, benchmarks, firmware tooling;
- `synthseal.models`: the shipped classifier, its labels and its card.
"""

__version__ = "0.1.0"
