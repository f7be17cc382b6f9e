"""The start-up of a measured process without the cyclic garbage collector.

Its own module, importing nothing but :mod:`gc`, so that it can begin
before lowimpact's and coverage.py's modules load.
"""

from __future__ import annotations

import gc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["QuietStartUp"]


class QuietStartUp:
    """The start-up of a measured process (importing coverage.py, reading its
    configuration, starting the collector) without the cyclic garbage
    collector, whose collections while coverage.py's modules load walk ever
    more objects and free next to nothing.

    Nothing is frozen (``gc.freeze()`` would save more): frozen objects are
    missing from the program's ``gc.get_objects()`` and
    ``gc.get_referrers()`` (a global of the program is held by a dict made
    before its first line), a garbage cycle among them is never collected,
    at exit neither, and ``gc.unfreeze()`` would also thaw what CPython
    froze itself.  Call :meth:`end` before the program's first line, and
    on every path that does not get there."""

    def __init__(self) -> None:
        self._collecting: Optional[bool] = gc.isenabled()
        gc.disable()

    def end(self) -> None:
        """Collect as before the start-up; the first call only."""
        if self._collecting:
            gc.enable()
        self._collecting = None
