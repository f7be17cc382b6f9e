"""pdb whose breakpoints cost nothing until they are hit.

The same debugger as :mod:`pdb` (its commands, messages and output), with
its tracing done by ``sys.monitoring`` events (lowimpact's engine on 3.11)
instead of ``sys.settrace``: code with no breakpoint runs at full speed,
before and after a stop, in every thread.  Use it as pdb::

    python -m lowimpact debug [-c command] (script.py | -m module) [args]

    import lowimpact.debug; lowimpact.debug.set_trace()
    PYTHONBREAKPOINT=lowimpact.debug.set_trace python script.py

See docs/DEBUG.md for what differs from pdb.
"""

from __future__ import annotations

import getopt
import os
import sys
import types
from typing import Any, Callable, List, Optional, Sequence

__all__ = ["Pdb", "set_trace", "post_mortem", "pm", "run", "runeval", "runcall", "main"]

_UNSUPPORTED = ("lowimpact debug needs sys.monitoring, which lowimpact provides on "
                "CPython 3.9, 3.10, 3.11, 3.12 and 3.13; this is %s %d.%d"
                % (sys.implementation.name, *sys.version_info[:2]))

if sys.implementation.name != "cpython" or sys.version_info < (3, 9):
    raise ImportError(_UNSUPPORTED)

import pdb as _pdb  # noqa: E402

from lowimpact.tools.debug import DebuggerBusy, Pdb  # noqa: E402


def set_trace(*, header: Optional[str] = None) -> None:
    """Enter the debugger at the caller's frame, as :func:`pdb.set_trace`
    (``PYTHONBREAKPOINT=lowimpact.debug.set_trace`` makes ``breakpoint()``
    call it)."""
    debugger = Pdb()
    if header is not None:
        debugger.message(header)
    debugger.set_trace(sys._getframe().f_back)


def post_mortem(t: Any = None) -> None:
    """Debug the traceback (or, on 3.13, exception) *t*, default the one
    being handled, as :func:`pdb.post_mortem`."""
    if t is None:
        t = sys.exc_info()[2]
    if t is None:
        raise ValueError("A valid traceback must be passed if no exception is being handled")
    debugger = Pdb()
    debugger.reset()
    debugger.interaction(None, t)


def pm() -> None:
    """Debug the last uncaught exception (``sys.last_traceback``)."""
    post_mortem(sys.last_traceback)


def run(statement: Any, globals: Optional[dict] = None, locals: Optional[dict] = None) -> None:
    """Run *statement* under the debugger, as :func:`pdb.run`."""
    Pdb().run(statement, globals, locals)


def runeval(expression: Any, globals: Optional[dict] = None,
            locals: Optional[dict] = None) -> Any:
    """Evaluate *expression* under the debugger, as :func:`pdb.runeval`."""
    return Pdb().runeval(expression, globals, locals)


def runcall(func: Callable[..., Any], /, *args: Any, **kwds: Any) -> Any:
    """Call ``func(*args, **kwds)`` under the debugger, as :func:`pdb.runcall`."""
    return Pdb().runcall(func, *args, **kwds)


def _breakpointhook(*args: Any, **kwargs: Any) -> Any:
    """``breakpoint()`` in a program run by ``lowimpact debug``: this
    debugger, unless PYTHONBREAKPOINT names another hook."""
    if os.environ.get("PYTHONBREAKPOINT"):
        return sys.__breakpointhook__(*args, **kwargs)
    debugger = Pdb()
    debugger.set_trace(sys._getframe().f_back)


# 3.11's pdb checks the target before it runs: a missing module or a directory
# is one line of error.  3.9's and 3.10's print a traceback (for a directory
# after a post-mortem session in pdb's own frame).
_PDB_CHECKS_TARGET = hasattr(_pdb, "_ScriptTarget")


def _target_error(args: Sequence[str]) -> bool:
    """Where pdb does not, say as 3.11's pdb does what is wrong with the
    target of command line *args*; whether there was something to say."""
    if _PDB_CHECKS_TARGET:
        return False
    try:
        opts, rest = getopt.getopt(list(args), "mhc:", ["help", "command="])
    except getopt.GetoptError:
        return False  # main() says so
    if not rest or any(opt in ("-h", "--help") for opt, _ in opts):
        return False
    if any(opt == "-m" for opt, _ in opts):
        import runpy

        try:
            runpy._get_module_details(rest[0])  # what pdb's main() runs
        except ImportError as exc:
            print("ImportError: %s" % exc)
            return True
        except Exception:
            return False  # pdb's traceback, as 3.11's
        return False
    if os.path.isdir(rest[0]):
        print("Error:", rest[0], "is a directory")
        return True
    return False


def main(argv: Optional[Sequence[str]] = None, prog: str = "lowimpact debug") -> int:
    """``python -m lowimpact debug [-c command] (script.py | -m module) [args]``:
    pdb's command line, restart loop and post-mortem, with this debugger."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if _target_error(args):
        return 1
    # pdb's own main(), whose name "Pdb" means this debugger: its options,
    # messages and restart loop are those of the same interpreter's pdb
    # (up to 3.12 its usage text names pdb.py, here this command).
    names = dict(vars(_pdb), Pdb=Pdb)
    if "_usage" in names:
        names["_usage"] = names["_usage"].replace("usage: pdb.py ", "usage: %s " % prog, 1)
    pdb_main = types.FunctionType(_pdb.main.__code__, names, "main")
    sys.argv[:] = [prog] + args
    hook = sys.breakpointhook
    sys.breakpointhook = _breakpointhook
    try:
        pdb_main()
    except DebuggerBusy as exc:
        print("%s: %s" % (prog, exc), file=sys.stderr)
        return 1
    except getopt.GetoptError as exc:
        # 3.11's pdb lets a bad option end in a traceback.
        print("%s: %s (see %s -h)" % (prog, exc, prog), file=sys.stderr)
        return 2
    finally:
        sys.breakpointhook = hook
    return 0
