"""debugpy (and pydevd) on lowimpact's ``sys.monitoring`` engine.

pydevd, the debugger inside debugpy, has two tracers: one on ``sys.settrace``
and one on ``sys.monitoring``.  It picks the second only on 3.12 and newer
(``PYDEVD_USE_SYS_MONITORING`` in ``_pydevd_bundle.pydevd_constants``), and
runs its pure-Python monitoring tracer where no Cython build of it exists, as
on 3.9, 3.10 and 3.11.  :func:`enable` lets it pick the monitoring tracer there too: when
``_pydevd_bundle.pydevd_constants`` is imported (by debugpy's vendored copy
of pydevd or a standalone pydevd), lowimpact's engine is installed as
``sys.monitoring`` just before the module runs, and its flag is set right
after it ran, before any other pydevd module reads it.

On 3.9, whose code objects have no ``co_lines()``, the tracer's one use
of it (the lines of a jump's offsets) is given lowimpact's.

Where the hook's assumptions about pydevd do not hold (a module, flag or
tracer missing), or on an interpreter without an engine (before 3.9), pydevd
is left alone and runs as it would have, on ``sys.settrace``, after a warning
on stderr.  On 3.12 and newer nothing needs doing.

Two ways in:

- ``python -m lowimpact debugpy [debugpy's arguments]`` runs
  ``python -m debugpy`` with the hook;
- the environment variable ``LOWIMPACT_DEBUGPY=1`` turns the hook on at
  start-up in every process of an environment where lowimpact is installed
  (a ``.pth`` file reads it), for launches one does not control, such as
  VS Code's.
"""

from __future__ import annotations

import builtins
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Callable, List, Optional, Sequence, Tuple

__all__ = ["ENVIRONMENT_VARIABLE", "enable", "enable_from_environment", "main"]

#: Set to 1 to have every Python process of the environment use the hook.
ENVIRONMENT_VARIABLE = "LOWIMPACT_DEBUGPY"

#: The module whose flag chooses pydevd's tracer.
CONSTANTS = "_pydevd_bundle.pydevd_constants"

# pydevd's pure-Python sys.monitoring tracer, relative to the directory that
# holds _pydevd_bundle: what the flag makes pydevd import on 3.9, 3.10 and 3.11.
_TRACER = os.path.join("_pydevd_sys_monitoring", "_pydevd_sys_monitoring.py")

# That tracer's module, and the method of it that asks a code object for
# co_lines() (3.10+), to map JUMP/BRANCH offsets to lines: on 3.9 the hook
# gives it lowimpact's co_lines() (from co_lnotab).
_TRACER_MODULE = "_pydevd_sys_monitoring._pydevd_sys_monitoring"
_LINE_OF_OFFSET = ("FuncCodeInfo", "get_line_of_offset")

# What pydevd_constants must have for the hook's change to do what it does
# in pydevd 1.8: the flag and the trace function the hook sets, and the
# version test by which pydevd_sys_monitoring picks the pure-Python tracer.
_NEEDED = ("PYDEVD_USE_SYS_MONITORING", "NO_FTRACE", "IS_PY312_OR_GREATER")

_PROG = "lowimpact debugpy"


def _warn(message: str) -> None:
    """Say why debugpy runs as it would without lowimpact.  Not a
    ``warnings`` warning: the hook may run from a ``.pth`` file, before
    the program could have set filters, and this must reach the user."""
    sys.stderr.write("%s: %s; debugpy runs without lowimpact (on sys.settrace)\n"
                     % (_PROG, message))


def _no_ftrace(frame: types.FrameType, event: str, arg: object) -> None:
    """pydevd's NO_FTRACE in sys.monitoring mode: a trace function that does
    nothing (the settrace variant clears ``frame.f_trace``)."""
    return None


def _engine_missing() -> Optional[str]:
    """Why lowimpact's engine cannot serve here, or None."""
    if sys.implementation.name != "cpython":
        return "lowimpact supports CPython only"
    if sys.version_info < (3, 9):
        return "no sys.monitoring engine for Python %d.%d yet" % sys.version_info[:2]
    return None


def _opted_out() -> bool:
    """pydevd's own switch, PYDEVD_USE_SYS_MONITORING=0, wins with the engine too."""
    return os.environ.get("PYDEVD_USE_SYS_MONITORING", "").lower() in ("no", "false", "0")


class _Loader(importlib.abc.Loader):
    """Runs pydevd_constants, with lowimpact's engine as ``sys.monitoring``
    if *monitoring*, then turns its flag on and hides the files *hidden*;
    leaves pydevd's own choice, with a warning, when the module is not what
    the hook knows or when *problem* (known beforehand) says why not."""

    def __init__(self, loader: importlib.abc.Loader, origin: Optional[str],
                 hidden: Tuple[str, ...], monitoring: bool, problem: Optional[str]) -> None:
        self._loader = loader
        self._origin = origin
        self._hidden = hidden
        self._monitoring = monitoring
        self._problem = problem

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        absent = not hasattr(sys, "monitoring")
        problem = self._problem
        if self._monitoring:
            problem = self._before()
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        self._hide(module)
        if self._monitoring and problem is None:
            problem = self._after(module)
        if problem is None:
            return
        if absent and hasattr(sys, "monitoring"):
            # As it was: pydevd looks for it elsewhere too.
            del sys.monitoring  # type: ignore[attr-defined]
        _warn(problem)

    def _before(self) -> Optional[str]:
        if self._origin is None:
            return "%s has no file" % CONSTANTS
        root = os.path.dirname(os.path.dirname(self._origin))
        if not os.path.isfile(os.path.join(root, _TRACER)):
            return "this pydevd has no pure-Python sys.monitoring tracer (%s)" % _TRACER
        if hasattr(sys, "monitoring"):
            return None
        import lowimpact

        try:
            lowimpact.install()
        except ImportError as exc:
            return "sys.monitoring is not available: %s" % exc
        return None

    def _hide(self, module: types.ModuleType) -> None:
        prefixes = getattr(module, "IGNORE_BASENAMES_STARTING_WITH", None)
        if self._hidden and isinstance(prefixes, tuple):
            # pydevd leaves out of stacks, and never traces, files whose path
            # starts with one of these, as it does runpy's and debugpy's own.
            module.IGNORE_BASENAMES_STARTING_WITH = prefixes + self._hidden

    @staticmethod
    def _after(module: types.ModuleType) -> Optional[str]:
        missing = [name for name in _NEEDED if not hasattr(module, name)]
        if missing:
            return "this pydevd's %s has no %s" % (CONSTANTS, ", ".join(missing))
        if module.PYDEVD_USE_SYS_MONITORING:
            return None
        module.PYDEVD_USE_SYS_MONITORING = True
        module.NO_FTRACE = _no_ftrace
        if not hasattr(types.CodeType, "co_lines"):
            sys.meta_path.insert(0, _Finder(_TRACER_MODULE, _tracer_spec))
        return None


def _line_of_offset(self: object, offset: int) -> int:
    """FuncCodeInfo.get_line_of_offset where code objects have no co_lines()
    (3.9): the line of the range holding *offset*, end included as pydevd
    has it, -1 if none."""
    from lowimpact._lines import co_lines

    for start, end, line in co_lines(self.code_obj):  # type: ignore[attr-defined]
        if line is not None and start <= offset <= end:
            return line
    return -1


class _TracerLoader(importlib.abc.Loader):
    """Runs pydevd's pure-Python tracer, then gives it :func:`_line_of_offset`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        owner = getattr(module, _LINE_OF_OFFSET[0], None)
        if owner is None or not hasattr(owner, _LINE_OF_OFFSET[1]):
            sys.stderr.write("%s: this pydevd's tracer has no %s.%s; its jump events need "
                             "code.co_lines(), which Python %d.%d lacks\n"
                             % ((_PROG,) + _LINE_OF_OFFSET + sys.version_info[:2]))
            return
        setattr(owner, _LINE_OF_OFFSET[1], _line_of_offset)


def _tracer_spec(spec: Optional[importlib.machinery.ModuleSpec],
                 loadable: bool) -> Optional[importlib.machinery.ModuleSpec]:
    if loadable:
        spec.loader = _TracerLoader(spec.loader)  # type: ignore[union-attr,arg-type]
    return spec


def _constants_spec(hidden: Tuple[str, ...], monitoring: bool, problem: Optional[str],
                    spec: Optional[importlib.machinery.ModuleSpec],
                    loadable: bool) -> Optional[importlib.machinery.ModuleSpec]:
    if not loadable:
        if monitoring or problem:
            _warn(problem or "%s is not a module the hook knows how to load" % CONSTANTS)
        return spec
    spec.loader = _Loader(spec.loader, spec.origin, hidden, monitoring,  # type: ignore
                          problem)
    return spec


class _Finder(importlib.abc.MetaPathFinder):
    """Hands the import of module *name*, once, to *wrap*: it gets the spec
    the finders after this one give, and whether its loader can be wrapped."""

    def __init__(self, name: str, wrap: Callable[..., Optional[importlib.machinery.ModuleSpec]]
                 ) -> None:
        self.name = name
        self._wrap = wrap

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[types.ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != self.name:
            return None
        # Once is enough: the module is then in sys.modules (a reload keeps
        # pydevd's own choice, which it made again).
        sys.meta_path.remove(self)
        # The finders after this one, whatever they are.
        spec = importlib.util.find_spec(fullname)
        return self._wrap(spec, spec is not None and spec.loader is not None and
                          hasattr(spec.loader, "exec_module"))


def _paths(files: Sequence[str]) -> Tuple[str, ...]:
    """Each file as pydevd may spell it: absolute, and with links resolved."""
    spellings = []
    for name in files:
        for spelling in (os.path.abspath(name), os.path.realpath(name)):
            if spelling not in spellings:
                spellings.append(spelling)
    return tuple(spellings)


def enable(hidden: Sequence[str] = ()) -> bool:
    """Have pydevd, when it loads in this process, trace with
    ``sys.monitoring`` (lowimpact's engine on 3.9, 3.10 and 3.11), and leave the files
    *hidden* out of the stacks it shows, as it does its own files.

    Call it before debugpy or pydevd is imported.  Returns whether pydevd's
    choice of tracer is to be changed: on 3.12 and newer none is needed
    (False).  Where lowimpact has no engine, or pydevd is already loaded,
    nothing is changed (False) and a warning on stderr says why -- when
    pydevd loads, so that processes that never load it (VS Code's launcher)
    say nothing.  PYDEVD_USE_SYS_MONITORING=0 keeps pydevd on settrace,
    silently.
    """
    native = sys.version_info >= (3, 12)
    problem = None if native else _engine_missing()
    monitoring = not native and problem is None and not _opted_out()
    if CONSTANTS in sys.modules:
        if monitoring or problem:
            _warn(problem or "pydevd was imported before the hook was enabled")
        return False
    if (monitoring or problem or hidden) and \
            not any(isinstance(finder, _Finder) and finder.name == CONSTANTS
                    for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder(CONSTANTS, functools.partial(
            _constants_spec, _paths(hidden), monitoring, problem)))
    return monitoring


def enable_from_environment() -> None:
    """:func:`enable` if ``LOWIMPACT_DEBUGPY`` says so (1, true, yes); the
    ``.pth`` file's entry point."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if value in ("1", "true", "yes"):
        enable()
    elif value not in ("", "0", "false", "no"):
        sys.stderr.write("%s: %s=%r is neither 1 nor 0; ignored\n"
                         % (_PROG, ENVIRONMENT_VARIABLE, value))


def _launcher_files() -> List[str]:
    """The files of ``python -m lowimpact debugpy`` that run below the program:
    lowimpact's, and runpy's, which ran ``-m lowimpact`` (before 3.11 runpy
    is not frozen, and pydevd shows its frames as it does not show frozen
    ones)."""
    import runpy

    import lowimpact
    from lowimpact import _cli

    package = os.path.dirname(os.path.abspath(lowimpact.__file__))
    return [os.path.join(package, "__main__.py"), _cli.__file__, __file__, runpy.__file__]


def main(argv: Sequence[str]) -> int:
    """``python -m lowimpact debugpy ARGS``: ``python -m debugpy ARGS`` with
    the hook, in this process.  Processes the debugged program starts get
    the hook too, through ``LOWIMPACT_DEBUGPY``, where the ``.pth`` file is
    installed."""
    if importlib.util.find_spec("debugpy") is None:
        sys.stderr.write("%s: debugpy is not installed (pip install 'lowimpact[debugpy]')\n"
                         % _PROG)
        return 1
    if enable(_launcher_files()):
        os.environ[ENVIRONMENT_VARIABLE] = "1"
    spec = importlib.util.find_spec("debugpy.__main__")
    if spec is None or spec.origin is None or not hasattr(spec.loader, "get_code"):
        sys.stderr.write("%s: this debugpy has no __main__ to run\n" % _PROG)
        return 1
    code = spec.loader.get_code(spec.name)  # type: ignore[union-attr]
    # What python -m debugpy sets up, without runpy: its frames would show
    # below the program's where runpy is not frozen (3.9, 3.10), when
    # debugpy's justMyCode is off, and this file's do not.
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=spec.origin, __cached__=spec.cached, __loader__=spec.loader,
                           __package__=spec.parent, __spec__=spec, __builtins__=builtins)
    sys.argv[:] = [spec.origin, *argv]
    sys.modules["__main__"] = module
    exec(code, module.__dict__)
    return 0
