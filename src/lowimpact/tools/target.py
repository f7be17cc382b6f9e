"""Running a program the way ``python script.py`` and ``python -m module`` do.

A tool wraps a program: it starts monitoring, runs the :class:`Target` and
stops monitoring.  The program must not notice the wrapper: it gets the same
``sys.argv``, ``sys.path[0]`` and ``__main__`` module as under ``python``,
and its exceptions (``SystemExit`` included) reach the tool unchanged so that
the tool can let them end the process as they would have ended it.

:class:`Scope` tells the program's own source files from the standard
library, installed packages and the machinery that runs the program.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import io
import os
import runpy
import site
import sys
import types

# typing is for the type checker only, and pkgutil and sysconfig are imported
# where needed: what this module imports adds to the start-up of every
# program a tool runs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional, Sequence

__all__ = ["CannotRun", "Scope", "Target", "is_launcher_file", "source_file"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# runpy is frozen since 3.11, so its code objects carry "<frozen runpy>", not
# runpy.__file__; ask one of them.
_RUNPY_FILE = runpy.run_path.__code__.co_filename

# -P (3.11+), read once here: profilers see calls made while the target starts.
_SAFE_PATH = getattr(sys.flags, "safe_path", False)


def _within(path: str, directory: str) -> bool:
    prefix = directory if directory.endswith(os.sep) else directory + os.sep
    return path == directory or path.startswith(prefix)


def _is_pseudo_file(filename: str) -> bool:
    """``<string>``, ``<stdin>``, ``<frozen importlib._bootstrap>``...: no file on disk."""
    return filename.startswith("<") and filename.endswith(">")


def is_launcher_file(filename: str) -> bool:
    """Whether code from *filename* belongs to the machinery that runs targets
    (lowimpact itself, runpy) rather than to the program."""
    if filename == _RUNPY_FILE:
        return True
    return not _is_pseudo_file(filename) and _within(os.path.realpath(filename), _PACKAGE_DIR)


def _launcher_only(traceback: Optional[types.TracebackType]) -> bool:
    while traceback is not None:
        if not is_launcher_file(traceback.tb_frame.f_code.co_filename):
            return False
        traceback = traceback.tb_next
    return True


class CannotRun(Exception):
    """The target could not be started: no such file, module or ``__main__``.

    ``status`` is the exit status python gives for the same mistake.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Target:
    """A program to run as ``__main__``, with the arguments it gets.

    *name* is a script file, a directory or zip file holding ``__main__.py``,
    or, with *module* true, a module or package name (as for ``python -m``).
    """

    def __init__(self, name: str, args: Sequence[str] = (), *, module: bool = False) -> None:
        self.name = name
        self.args = list(args)
        self.module = module
        # A directory or zip file: what runpy can import __main__ from.
        self._path_entry = not module and os.path.exists(name) and _has_importer(name)
        # The first sys.path entry a script runs with (known once prepared).
        self._script_directory: Optional[str] = None

    def __repr__(self) -> str:
        return "Target(%r, %r, module=%r)" % (self.name, self.args, self.module)

    def root(self) -> str:
        """The directory tree that holds the target's own code.

        That is the script's directory, the directory or zip file itself, or
        the directory of the module's top-level package (of the module itself
        when it is not in a package).  Finding it imports nothing.
        """
        if not self.module:
            path = os.path.realpath(self.name)
            return path if self._path_entry else os.path.dirname(path)
        try:
            spec = importlib.util.find_spec(self.name.partition(".")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            if spec.submodule_search_locations:
                return os.path.realpath(list(spec.submodule_search_locations)[0])
            if spec.has_location and spec.origin:
                return os.path.dirname(os.path.realpath(spec.origin))
        # Running it will report the module as missing; there is nothing to see.
        return os.getcwd()

    def prepare(self) -> Callable[[], None]:
        """Find and load the target; return the function that runs it.

        The returned function runs the target in this process, as ``python``
        would: it sets ``sys.argv`` and ``sys.path[0]`` (unless
        ``sys.flags.safe_path``), makes the target the ``__main__`` module and
        executes it.  For a script it does nothing else, so that a tool can
        start monitoring between the two steps and see only the program; for
        a module, a directory or a zip file the import system's search runs in
        it, as under ``python -m``.

        Both steps raise :class:`CannotRun` when the target cannot be found
        (no such file, module or ``__main__``); every exception of the program
        itself (``SyntaxError`` and ``SystemExit`` included) propagates
        unchanged.
        """
        if self.module:
            return self._run_module
        if self._path_entry:
            return self._run_path_entry
        return self._load_script()

    def set_sys_path(self) -> None:
        """Give ``sys.path`` now the first entry a prepared script runs with
        (nothing for a module, whose entry is already python's, or a
        directory or zip file, which runpy puts there): for a tool whose
        set-up reads the program's ``sys.path`` before it runs, as ``coverage
        run`` sets it before coverage.py decides which files it measures."""
        if self._script_directory is not None and not _SAFE_PATH:
            sys.path[:1] = [self._script_directory]

    def run(self) -> None:
        """Run the target: ``prepare()()``."""
        self.prepare()()

    def _run_module(self) -> None:
        # python shows "-m" while it searches, then the module's file.
        sys.argv[:] = ["-m", *self.args]
        self._runpy(runpy.run_module, self.name, alter_sys=True)

    def _run_path_entry(self) -> None:
        sys.argv[:] = [self.name, *self.args]
        if not _SAFE_PATH:
            # run_path puts the directory or zip file there itself.
            del sys.path[:1]
        self._runpy(runpy.run_path, os.path.abspath(self.name))

    @staticmethod
    def _runpy(run: Callable[..., object], name: str, **options: bool) -> None:
        try:
            run(name, run_name="__main__", **options)
        except ImportError as exc:
            # runpy reports a missing module or __main__ as an ImportError raised
            # from its own frames; the program's ImportErrors come from its code.
            if _launcher_only(exc.__traceback__):
                raise CannotRun(str(exc), 1) from None
            raise

    def _load_script(self) -> Callable[[], None]:
        # Not runpy.run_path: it sets sys.argv[0] to the path it is given and
        # puts the previous __main__ module back when the script returns, while
        # python keeps argv[0] as typed and the script's __main__ to the end
        # (atexit handlers, pickling of its classes).
        path = os.path.abspath(self.name)
        try:
            with io.open_code(path) as file:
                source = file.read()
        except OSError as exc:
            raise CannotRun(
                "can't open file %r: [Errno %d] %s" % (path, exc.errno, exc.strerror), 2
            ) from None
        code = _compile_script(source, path)
        argv = [self.name, *self.args]
        directory = self._script_directory = os.path.dirname(os.path.realpath(path))
        main = types.ModuleType("__main__")
        main.__dict__.update(
            __file__=path,
            __cached__=None,
            __builtins__=builtins,
            __loader__=importlib.machinery.SourceFileLoader("__main__", path),
        )

        def run_script() -> None:
            sys.argv[:] = argv
            if not _SAFE_PATH:
                sys.path[:1] = [directory]
            sys.modules["__main__"] = main
            exec(code, main.__dict__)

        return run_script


def _compile_script(source: bytes, path: str) -> types.CodeType:
    """The code of a script, as python compiles it.  In C where lowimpact is
    built: the builtin compile() sets up the ast module's types first (a few
    milliseconds before the program's first line).  Where it is not, as on
    the versions it does not support, the tools still load the script before
    they say what they need."""
    if b"\0" not in source:    # (else compile()'s error)
        try:
            from lowimpact._target import compile_script
        except ImportError:
            pass
        else:
            return compile_script(source, path)
    return compile(source, path, "exec", dont_inherit=True)


def _has_importer(path: str) -> bool:
    """Whether a path hook makes a finder of *path*, as for an entry of
    ``sys.path`` (the answer of ``pkgutil.get_importer``, which runpy asks; on
    3.12+ pkgutil imports typing, a start-up cost every run would pay)."""
    if path in sys.path_importer_cache:
        return sys.path_importer_cache[path] is not None
    for hook in sys.path_hooks:
        try:
            finder = hook(path)
        except ImportError:
            continue
        sys.path_importer_cache.setdefault(path, finder)
        return True
    return False


def _installation_dirs() -> set:
    """Where the standard library and installed packages live."""
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    dirs.update((sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix))
    return {os.path.realpath(d) for d in dirs if d}


class Scope:
    """The source files a tool looks at, and how to name them.

    With a *root* directory: the files under it, except those of the standard
    library and of installed packages (a virtual environment may sit inside a
    project).  With *all_code* or without a root: every file.  lowimpact's own
    code and runpy are never in scope.  Membership is decided by file name
    (``co_filename``).
    """

    def __init__(self, root: Optional[str] = None, *, all_code: bool = False) -> None:
        self.root = None if root is None else os.path.realpath(root)
        self.all_code = all_code or root is None
        # A directory that holds the root is the program's own (a script in the
        # standard library traces the standard library).
        self._excluded = [] if self.all_code else [
            d for d in _installation_dirs() if not _within(self.root, d)
        ]
        entries = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
        # Most specific first: site-packages before the stdlib directory holding it.
        self._bases = ([self.root] if self.root else []) + sorted(entries, key=len, reverse=True)

    def __contains__(self, filename: str) -> bool:
        """Whether code compiled from *filename* is in scope."""
        if is_launcher_file(filename):
            return False
        if self.all_code:
            return True
        if _is_pseudo_file(filename):
            return False
        path = os.path.realpath(filename)
        return _within(path, self.root) and not any(_within(path, d) for d in self._excluded)

    def short_name(self, filename: str) -> str:
        """*filename* relative to the root, or else to the ``sys.path`` entry it
        was imported from (``json/decoder.py``); unchanged when neither holds it."""
        path = source_file(filename)
        if path is None:
            return filename
        path = os.path.realpath(path)
        for base in self._bases:
            if _within(path, base) and path != base:
                return os.path.relpath(path, base)
        return filename


def source_file(filename: str) -> Optional[str]:
    """The file that holds the source of code compiled from *filename*.

    That is *filename* itself, or for a frozen standard module
    (``<frozen os>``) its ``.py`` file, with the same lines; None for other
    code without a file (``<string>``...).
    """
    if not _is_pseudo_file(filename):
        return filename
    if filename.startswith("<frozen "):
        name = filename[len("<frozen ") : -1]
        path = getattr(sys.modules.get(name), "__file__", None)
        if path is None:
            # 3.10 gives frozen zipimport no __file__; it is frozen from the
            # standard library's zipimport.py when the interpreter is built.
            import sysconfig

            path = os.path.join(sysconfig.get_path("stdlib"), *name.split(".")) + ".py"
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None
