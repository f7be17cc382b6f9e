"""Measuring the processes a measured program starts.

With coverage.py's ``[run] patch = subprocess`` (or ``concurrency =
multiprocessing``), ``cover run`` puts its configuration, serialized as
coverage.py serializes it, in the environment variable
:data:`PROCESS_ENV`.  Every Python process started from then on inherits
it, and ``lowimpact_cover.pth`` (installed in site-packages with lowimpact,
run by :mod:`site` at interpreter start-up, before the program's first line)
calls :func:`process_startup`, which measures the process with the C core
and writes a parallel data file when it ends (``cover combine`` merges
them).  This is coverage.py's own mechanism (``COVERAGE_PROCESS_CONFIG`` and
its ``a1_coverage.pth``) under another name, so that coverage.py's hook does
not start coverage.py's tracer in the same children.
"""

from __future__ import annotations

import atexit
import os
import site
import sys
from typing import Optional

__all__ = ["PROCESS_ENV", "PTH_FILE", "hook_installed", "process_measurement", "process_startup"]

#: The environment variable holding the serialized configuration.
PROCESS_ENV = "LOWIMPACT_COVER_PROCESS"

#: The start-up hook's file name in site-packages.
PTH_FILE = "lowimpact_cover.pth"

# coverage.py's prefix for a configuration given as data instead of a file.
_CONFIG_DATA_PREFIX = ":data:"

_started = None


def hook_installed() -> bool:
    """Whether a Python started now runs the hook: the .pth file is in a
    directory :mod:`site` processed (those end up on ``sys.path``)."""
    directories = list(sys.path) + list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return any(os.path.isfile(os.path.join(d, PTH_FILE)) for d in directories if d)


def process_measurement() -> Optional[object]:
    """The measurement :func:`process_startup` started in this process, or None."""
    return _started


def process_startup() -> Optional[object]:
    """Start measuring this process if :data:`PROCESS_ENV` asks for it (once).

    Returns the :class:`~lowimpact.tools.cover.measure.Measurement` started,
    or None.  A failure is reported on stderr and leaves the process
    unmeasured, never broken: the program is not ours to stop.
    """
    global _started
    config = os.environ.get(PROCESS_ENV)
    if not config or _started is not None:
        return None
    try:
        from lowimpact.tools.cover.measure import Measurement

        measurement = Measurement(rcfile=_CONFIG_DATA_PREFIX + config, parallel=True,
                                  messages=False, child=True, reports=False)
        measurement.start()
    except Exception as exc:
        print("lowimpact cover: this process is not measured: %s" % exc, file=sys.stderr)
        return None
    _started = measurement
    atexit.register(_save_at_exit, measurement)
    return measurement


def _save_at_exit(measurement) -> None:
    measurement.stop()
    try:
        measurement.save()
    except Exception as exc:
        print("lowimpact cover: could not save data: %s" % exc, file=sys.stderr)
