"""Low-impact monitoring (PEP 669, ``sys.monitoring``) for every CPython.

On CPython 3.12 and newer, :mod:`lowimpact.monitoring` is the interpreter's own
``sys.monitoring``.  On older interpreters it is an engine written in C that
instruments bytecode only where events are wanted.
"""

from __future__ import annotations

import os
import sys

__all__ = ["__version__", "get_include", "install", "SUPPORTED_VERSIONS", "NATIVE"]

__version__ = "0.1.0"

#: The (major, minor) versions on which :mod:`lowimpact.monitoring` works.
SUPPORTED_VERSIONS = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))

#: True where the interpreter implements ``sys.monitoring`` itself.
NATIVE = sys.version_info >= (3, 12)


def get_include() -> str:
    """Return the directory that holds ``lowimpact.h``, for compiling extensions."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def install() -> None:
    """Make :mod:`lowimpact.monitoring` available as ``sys.monitoring``.

    Code written for CPython 3.12 can then run unchanged on older interpreters.
    On 3.12 and newer this does nothing.  Raises ImportError where the
    interpreter is not supported.
    """
    if NATIVE:
        return
    from lowimpact import monitoring

    sys.monitoring = monitoring  # type: ignore[attr-defined]
