"""A deterministic profiler with cProfile's interface, on C callbacks.

``Profile`` mirrors :class:`cProfile.Profile` (``enable``, ``disable``,
``runcall``, ``run``, ``runctx``, ``create_stats``, ``snapshot_stats``,
``print_stats``, ``dump_stats``, the context manager, and ``stats`` in the
form :mod:`pstats` reads), so code written for cProfile switches by its
import::

    import lowimpact.profile as cProfile

What it measures is what cProfile on 3.12 measures, keyed and named the same
way (see docs/PROFILE.md); the per-event work is C callbacks of
``lowimpact.monitoring`` (tool id 2, ``sys.monitoring.PROFILER_ID``), and each
thread has its own stack.  Needs CPython 3.11 or newer.
"""

from __future__ import annotations

import marshal
import sys

# typing is for the type checker only: importing it would add to the start-up
# of every profiled program (annotations are strings here).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import (Any, Callable, Dict, List, Optional, TextIO, Tuple, TypeVar,
                        Union)

    Key = Tuple[str, int, str]
    T = TypeVar("T")

__all__ = ["Profile", "run", "runctx", "label", "FORMATS"]

#: Output formats besides pstats: what ``write`` accepts.
FORMATS = ("pstats", "speedscope", "collapsed", "svg")


#: Why profiling is impossible here, or None.
UNSUPPORTED: Optional[str] = None
if sys.version_info >= (3, 9):
    from lowimpact._profile import Profiler as _Profiler
else:
    UNSUPPORTED = ("lowimpact profile needs CPython 3.9 or newer (lowimpact's engine, or "
                   "sys.monitoring); this is %d.%d" % sys.version_info[:2])

    class _Profiler:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(UNSUPPORTED)


def label(code: Union[str, Any]) -> Key:
    """cProfile's key of a function: (file, first line, name), or
    ``('~', 0, name)`` for a C function."""
    if isinstance(code, str):
        return ("~", 0, code)
    return (code.co_filename, code.co_firstlineno, code.co_name)


class Profile(_Profiler):
    """Profile(timer=None, timeunit=0.0, subcalls=True, builtins=True, *, clock='wall')

    As :class:`cProfile.Profile`; ``clock`` is ``'wall'`` (a monotonic clock)
    or ``'cpu'`` (each thread's CPU time).  A custom *timer* function is not
    supported: the clock is read in C.
    """

    def __init__(self, timer: None = None, timeunit: float = 0.0, subcalls: bool = True,
                 builtins: bool = True, *, clock: str = "wall", tree: bool = False) -> None:
        if timer is not None:
            raise TypeError("lowimpact.profile.Profile has no custom timer; use clock='wall' "
                            "or clock='cpu'")
        super().__init__(clock=clock, subcalls=subcalls, builtins=builtins, tree=tree)
        self.stats: Dict[Key, tuple] = {}
        #: Functions left out of every output (the CLI's own frames).
        self.hide: Callable[[Key], bool] = lambda key: False

    # disable(), clear(), getstats(), clock and enabled are the C core's.

    def enable(self) -> None:
        """Start profiling (every thread)."""
        try:
            super().enable()
        except ValueError as exc:
            from lowimpact import monitoring

            holder = monitoring.get_tool(2)
            if holder is not None and not self.enabled:
                raise ValueError(
                    "lowimpact profile needs tool id 2 (sys.monitoring.PROFILER_ID), "
                    "which %r holds" % holder) from exc
            raise

    def create_stats(self) -> None:
        """Disable, then fill ``stats``."""
        self.disable()
        self.snapshot_stats()

    def snapshot_stats(self) -> None:
        """Fill ``stats``, pstats' dict: ``{(file, line, name): (primitive calls,
        calls, own time, total time, {caller: (calls, primitive calls, own, total)})}``."""
        functions, pairs, _nodes = self.getstats()
        keys = [label(code) for code, _stat in functions]
        stats: Dict[Key, list] = {}
        for key, (_code, (calls, reccalls, own, total)) in zip(keys, functions):
            # Distinct code objects can share a key (lambdas on one line): sum them.
            prev = stats.get(key)
            if prev is None:
                stats[key] = [calls - reccalls, calls, own, total, {}]
            else:
                prev[0] += calls - reccalls
                prev[1] += calls
                prev[2] += own
                prev[3] += total
        for caller, callee, (calls, reccalls, own, total) in pairs:
            if self.hide(keys[caller]) or self.hide(keys[callee]):
                continue
            callers = stats[keys[callee]][4]
            entry = (calls, calls - reccalls, own, total)
            prev = callers.get(keys[caller])
            if prev is not None:
                entry = tuple(a + b for a, b in zip(prev, entry))
            callers[keys[caller]] = entry
        self.stats = {key: tuple(value) for key, value in stats.items() if not self.hide(key)}

    def print_stats(self, sort: Union[str, int, tuple] = -1, limit: Optional[int] = None,
                    stream: Optional[TextIO] = None) -> None:
        """Print the stats as cProfile does (pstats, directories stripped)."""
        import pstats

        if not isinstance(sort, tuple):
            sort = (sort,)
        stats = pstats.Stats(self, stream=stream)
        stats.strip_dirs().sort_stats(*sort)
        if limit is None:
            stats.print_stats()
        else:
            stats.print_stats(limit)

    def dump_stats(self, file: str) -> None:
        """Write the stats to *file* as cProfile does (a marshal dump pstats reads)."""
        with open(file, "wb") as f:
            self.create_stats()
            marshal.dump(self.stats, f)

    def write(self, fmt: str, stream: Any) -> None:
        """Disable and write the profile in *fmt* (one of FORMATS) to *stream*
        (binary for pstats, text for the others); the others need ``tree=True``."""
        self.create_stats()
        if fmt == "pstats":
            marshal.dump(self.stats, stream)
            return
        from lowimpact.tools import flame

        functions, _pairs, nodes = self.getstats()
        if functions and not nodes and fmt != "pstats":
            raise ValueError("the %s format needs Profile(tree=True)" % fmt)
        names = [None if self.hide(label(code)) else _frame_name(code)
                 for code, _stat in functions]
        if fmt == "speedscope":
            _write_speedscope(names, functions, nodes, stream)
        elif fmt == "collapsed":
            flame.write_collapsed(_path_weights(names, nodes), stream)
        elif fmt == "svg":
            flame.write_svg(_path_weights(names, nodes), stream,
                            title="lowimpact profile (%s clock)" % self.clock, unit="ns")
        else:
            raise ValueError("unknown format %r (one of %s)" % (fmt, ", ".join(FORMATS)))

    def run(self, cmd: str) -> "Profile":
        """Profile ``exec(cmd)`` in ``__main__``'s namespace."""
        import __main__

        namespace = __main__.__dict__
        return self.runctx(cmd, namespace, namespace)

    def runctx(self, cmd: str, globals: Dict[str, Any], locals: Optional[Any]) -> "Profile":
        """Profile ``exec(cmd, globals, locals)``."""
        self.enable()
        try:
            exec(cmd, globals, locals)
        finally:
            self.disable()
        return self

    def runcall(self, func: Callable[..., T], /, *args: Any, **kw: Any) -> T:
        """Profile ``func(*args, **kw)`` and return its result."""
        self.enable()
        try:
            return func(*args, **kw)
        finally:
            self.disable()

    def __enter__(self) -> "Profile":
        self.enable()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.disable()


def _frame_name(code: Union[str, Any]) -> str:
    if isinstance(code, str):
        return code
    return "%s (%s:%d)" % (code.co_name, code.co_filename, code.co_firstlineno)


def _path_weights(names: List[Optional[str]], nodes: list) -> Dict[Tuple[str, ...], int]:
    """Own time in nanoseconds per call path (threads merged); hidden
    functions (no name) are left out of the paths."""
    paths: List[Tuple[str, ...]] = []
    weights: Dict[Tuple[str, ...], int] = {}
    for parent, function, _thread, (_calls, _rec, own, _total) in nodes:
        name = names[function]
        path = (paths[parent] if parent >= 0 else ()) + ((name,) if name is not None else ())
        paths.append(path)
        ns = int(round(own * 1e9))
        if ns > 0:
            weights[path] = weights.get(path, 0) + ns
    return weights


def _write_speedscope(names: List[Optional[str]], functions: list, nodes: list, stream: TextIO) -> None:
    """speedscope's evented profile, one per thread: the call tree with each
    path's calls merged, laid out one after another (an exact profiler keeps
    totals per path, not every call's timestamps)."""
    import json

    children: Dict[int, List[int]] = {}
    roots: Dict[int, List[int]] = {}
    for index, (parent, _function, thread, _stat) in enumerate(nodes):
        (children.setdefault(parent, []) if parent >= 0 else
         roots.setdefault(thread, [])).append(index)
    profiles = []
    for thread, top in sorted(roots.items()):
        events: List[Dict[str, Any]] = []

        def lay_out(node: int, at: float) -> float:
            total = nodes[node][3][3]
            shown = names[nodes[node][1]] is not None
            if shown:
                events.append({"type": "O", "frame": nodes[node][1], "at": at})
            inner = at
            for child in children.get(node, ()):
                inner = lay_out(child, inner)
            end = max(at + total, inner)
            if shown:
                events.append({"type": "C", "frame": nodes[node][1], "at": end})
            return end

        at = 0.0
        for node in top:
            at = lay_out(node, at)
        profiles.append({"type": "evented", "name": "thread %d" % thread, "unit": "seconds",
                         "startValue": 0.0, "endValue": at, "events": events})
    frames = []
    for name, (code, _stat) in zip(names, functions):
        frame: Dict[str, Any] = {"name": name or "(hidden)"}
        if not isinstance(code, str):
            frame.update(name=code.co_name, file=code.co_filename, line=code.co_firstlineno)
        frames.append(frame)
    json.dump({"$schema": "https://www.speedscope.app/file-format-schema.json",
               "shared": {"frames": frames}, "profiles": profiles,
               "name": "lowimpact profile", "activeProfileIndex": 0,
               "exporter": "lowimpact"}, stream)
    stream.write("\n")


def run(statement: str, filename: Optional[str] = None, sort: Union[str, int] = -1) -> None:
    """As :func:`cProfile.run`: profile *statement* in ``__main__``, then
    print the stats (or dump them to *filename*)."""
    import __main__

    runctx(statement, __main__.__dict__, __main__.__dict__, filename, sort)


def runctx(statement: str, globals: Dict[str, Any], locals: Optional[Any],
           filename: Optional[str] = None, sort: Union[str, int] = -1) -> None:
    """As :func:`cProfile.runctx`."""
    prof = Profile()
    try:
        prof.runctx(statement, globals, locals)
    except SystemExit:
        pass
    finally:
        if filename is not None:
            prof.dump_stats(filename)
        else:
            prof.print_stats(sort)
