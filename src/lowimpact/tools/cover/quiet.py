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
    collector, whose collections while coverage.py's modules load walk an
    ever larger heap and free next to nothing; :meth:`end` then freezes what
    the start-up made (``gc.freeze()``) so that the program's own full
    collections, and the interpreter's at exit, do not walk coverage.py's
    and lowimpact's objects again and again.  Call :meth:`end` before the
    program's first line, and on every path that does not get there."""

    def __init__(self) -> None:
        self._collecting: Optional[bool] = gc.isenabled()
        gc.disable()

    def end(self, freeze: bool = True) -> None:
        """Collect as before the start-up; the first call only."""
        if self._collecting is None:
            return
        if freeze:
            gc.freeze()
        if self._collecting:
            gc.enable()
        self._collecting = None
