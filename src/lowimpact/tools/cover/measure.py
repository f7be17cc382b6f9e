"""One measured run: coverage.py's configuration and data file around the C core.

coverage.py decides everything a user configures -- which files are
measured (``source``, ``include``, ``omit``, ``--pylib``), ``branch``, the
data file and its parallel suffix, path remapping -- and it writes the data
file.  lowimpact's C core (:mod:`lowimpact._cover`) does the measuring in
place of coverage.py's tracer.

coverage.py has no public API for "decide which files to measure, but let me
measure"; :class:`Measurement` uses the few private members that
``Coverage.start()`` itself uses for that (``_init``, ``_init_data``,
``InOrOut.should_trace``, ``_file_mapper``, ``_post_save_work``), and
checks for them up front so that a coverage.py that changed them gives a
clear error instead of wrong data.

Contexts are coverage.py's: a static one (``[run] context``, ``--context``)
labels everything; a dynamic one (``[run] dynamic_context =
test_function``, or :meth:`Measurement.switch_context`) is joined to it
with ``|``.  The core records each stretch of the run under its dynamic
context; the data of each context is written as coverage.py writes it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import threading
import types
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from lowimpact.tools.cover import CoverError, core
from lowimpact.tools.cover.branchways import BranchWays, branch_imports

# arcs (with the bytecode readers) is needed for branches only, startup for
# subprocesses only: each is imported where it is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from lowimpact.tools.cover.arcs import Arc, CodeMap

__all__ = ["CoverError", "Measurement", "TOOL_ID", "subline_path"]

#: sys.monitoring.COVERAGE_ID: the id coverage tools use.
TOOL_ID = 1

#: ``[run] concurrency`` choices: every thread is measured anyway; the
#: children of multiprocessing are measured as other subprocesses are.
_CONCURRENCY = {"thread", "multiprocessing"}

#: ``[run] patch`` choices (``_exit`` and ``fork`` are always on).
_PATCHES = {"_exit", "fork", "subprocess", "execv"}

#: ``[run] dynamic_context`` values that mean "none", as coverage.py reads them.
_NO_DYNAMIC_CONTEXT = ("", "none")

#: The raw data of one context (or one period of it): lines, branches and
#: exits by code id, as ``Collector.data()`` gives them.
RawData = Tuple[Dict[int, Set[int]], Dict[int, Dict[int, Set[int]]], Dict[int, Set[int]]]

#: The coverage.py versions whose private members this module relies on.
_NEEDED = ("_init", "_init_data", "_post_init", "_post_save_work", "_data_suffix_specified",
           "_file_mapper")


def subline_path(data_file: str, data_filename: Optional[str] = None) -> str:
    """Where the sub-line branch data of a data file goes, beside it.

    *data_file* is the configured name (``.coverage``), *data_filename* the
    file written, which has a suffix in parallel mode.  The name must not
    look like a parallel data file (``.coverage.*``) to ``coverage combine``:
    ``.coverage`` -> ``.coverage-subline.json``, ``.coverage.host.1.x`` ->
    ``.coverage-subline.host.1.x.json``.
    """
    suffix = "" if data_filename is None else data_filename[len(data_file):]
    return data_file + "-subline" + suffix + ".json"


def _coverage_exceptions() -> tuple:
    """coverage.py's errors of configuration (7.10, the last for 3.9, has
    ConfigError outside CoverageException)."""
    from coverage.exceptions import ConfigError, CoverageException

    return (CoverageException, ConfigError)


class Measurement:
    """A coverage.py ``Coverage`` configured as ``coverage run`` would be,
    measured by lowimpact's C core.

    Arguments are ``coverage.Coverage``'s (None: from the configuration),
    and *reports*: whether :attr:`coverage` must be a ``coverage.Coverage``
    that can report too; False (``cover run`` and its subprocesses, which
    only measure and save) makes it a
    :class:`~lowimpact.tools.cover.runcoverage.RunCoverage` where the
    configuration allows, which leaves coverage.py's reporters unimported.
    """

    def __init__(
        self,
        *,
        data_file: Optional[str] = None,
        parallel: Optional[bool] = None,
        pylib: Optional[bool] = None,
        branch: Optional[bool] = None,
        rcfile: Any = True,
        source: Optional[List[str]] = None,
        include: Optional[List[str]] = None,
        omit: Optional[List[str]] = None,
        concurrency: Optional[List[str]] = None,
        append: bool = False,
        messages: bool = True,
        child: bool = False,
        context: Optional[str] = None,
        reports: bool = True,
    ) -> None:
        self._cover = core()
        kwargs: Dict[str, Any] = dict(
            data_suffix=parallel or None,
            cover_pylib=pylib,
            branch=branch,
            config_file=rcfile,
            source=source,
            omit=omit,
            include=include,
            concurrency=concurrency,
            check_preimported=not child,
            messages=messages,
            context=context,
        )
        if data_file is not None:
            kwargs["data_file"] = data_file
        try:
            if reports:
                import coverage

                self.coverage = coverage.Coverage(**kwargs)
            else:
                from lowimpact.tools.cover.runcoverage import coverage_for_run

                self.coverage = coverage_for_run(**kwargs)
        except ModuleNotFoundError as exc:
            if exc.name != "coverage":
                raise
            raise CoverError(
                "lowimpact cover needs coverage.py: pip install 'lowimpact[cover]'"
            ) from None
        except Exception as exc:
            if isinstance(exc, _coverage_exceptions()):
                raise CoverError(str(exc)) from None
            raise
        self._coverage_exception = _coverage_exceptions()
        missing = [name for name in _NEEDED if not hasattr(self.coverage, name)]
        if missing:
            from coverage.version import __version__

            raise CoverError(
                "coverage.py %s lacks %s, which lowimpact cover uses; install a coverage 7.x "
                "that has them" % (__version__, ", ".join(missing))
            )
        unsupported = set(self.coverage.config.concurrency) - _CONCURRENCY
        if unsupported:
            raise CoverError("concurrency=%s is not supported by lowimpact cover (yet)"
                             % ",".join(sorted(unsupported)))
        unknown = set(self.coverage.config.patch) - _PATCHES
        if unknown:
            raise CoverError("unknown patch %s in [run] patch" % ", ".join(map(repr, sorted(unknown))))
        dynamic = self.coverage.config.dynamic_context
        self._test_context = None
        if dynamic == "test_function":
            from coverage.context import should_start_context_test_function

            self._test_context = should_start_context_test_function
        elif (dynamic or "") not in _NO_DYNAMIC_CONTEXT:
            # coverage.py's own words (a ConfigError at its start()).
            raise CoverError("Don't understand dynamic_context setting: %r" % dynamic)
        self.append = append
        self.child = child
        self.branch = bool(self.coverage.get_option("run:branch"))
        self._collector = None
        self._saved = False
        self._lock = threading.Lock()
        self._real_exit = None
        self._old_sigterm = None
        #: The collector's implied_of, with the CodeMaps it made (by code
        #: id) and the first-line maps, which saving uses too.
        self.ways = BranchWays()

    # -- running -----------------------------------------------------------

    def start(self) -> None:
        """Read the configuration and start measuring (all threads).  After
        :meth:`stop`, measure again into the same data, as
        ``Coverage.start()`` after ``Coverage.stop()`` does."""
        if self._collector is not None:
            self._restart()
            return
        self.prepare()
        inorout = self.coverage._inorout

        from lowimpact.tools.target import is_launcher_file

        def should_trace(filename: str, frame: Optional[types.FrameType]) -> Optional[str]:
            # lowimpact's own code (the launcher, saving the data) is not the
            # program's, as coverage.py's own code is not.
            if is_launcher_file(filename):
                return None
            disposition = inorout.should_trace(filename, frame)
            return disposition.source_filename if disposition.trace else None

        implied_of = None
        if self.branch:
            # What implied_of runs, imported before measuring: code that
            # first runs inside a callback costs the engine (3.9-3.11) a
            # measured start each.
            self.prepare_saving()
            from lowimpact.tools.cover import bytecode
            # (Where lines are reported only at their starts (3.9), they
            # tell no branch's way: CodeMap.implied_directions().)
            if bytecode.MID_LINE_ENTRY:
                implied_of = self.ways.implied_of
        self._collector = self._cover.Collector(
            TOOL_ID, should_trace, branch=self.branch, test_context=self._test_context,
            implied_of=implied_of)
        try:
            self._restart()
        except CoverError:
            self._collector = None   # (a later start() begins afresh)
            raise
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        # [run] sigterm = true: a program ended by SIGTERM keeps its data, as
        # under coverage.py (only the main thread may set handlers).
        if (self.coverage.get_option("run:sigterm")
                and threading.current_thread() is threading.main_thread()):
            self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._measure_subprocesses()

    def prepare(self, imported: Optional[Set[str]] = None) -> None:
        """What :meth:`start` does before measuring: the data file, the file
        selection (``InOrOut``), the data to append to, coverage.py's
        warnings about the settings and the modules already imported
        (*imported*: their names, when they are not this process's modules
        but the program's)."""
        cov = self.coverage
        try:
            with _sysconfig_paths_asked_once(), _directories_resolved_once():
                self._prepare(cov)
                if self.append:
                    cov.load()
                if cov._plugins.context_switchers:
                    raise CoverError("coverage.py plugins with dynamic contexts (%s) are not "
                                     "supported by lowimpact cover" % ", ".join(
                                         p._coverage_plugin_name
                                         for p in cov._plugins.context_switchers))
                inorout = cov._inorout
                inorout.warn_conflicting_settings()
                if not self.child:
                    hidden = () if imported is None else set(sys.modules) - imported
                    with hidden_modules(hidden):
                        inorout.warn_already_imported_files()
        except self._coverage_exception as exc:
            raise CoverError(str(exc)) from None

    def prepare_saving(self) -> None:
        """Import what saving (and, while measuring, implied_of) runs with
        --branch."""
        if self.branch:
            branch_imports()

    def _restart(self) -> None:
        """Start the collector (again); os._exit saves the data meanwhile."""
        if self._collector.running:
            return
        self._saved = False
        try:
            self._collector.start()
        except ValueError as exc:
            raise CoverError(
                "cannot take sys.monitoring tool id %d (%s): is another coverage tool running?"
                % (TOOL_ID, exc)
            ) from None
        # What ran before os._exit() (a child of fork(), a program that ends
        # that way) is kept, as coverage.py's [run] patch = _exit does.
        self._real_exit = os._exit
        os._exit = self._exit

    def _measure_subprocesses(self) -> None:
        """``[run] patch = subprocess`` (or ``concurrency = multiprocessing``):
        every Python process started from now on measures itself (see
        :mod:`~lowimpact.tools.cover.startup`); ``patch = execv``: the data
        is saved before the process becomes another program."""
        config = self.coverage.config
        if "execv" in config.patch:
            for name in ("execv", "execve"):
                setattr(os, name, self._before_exec(getattr(os, name), name == "execve"))
        if "subprocess" not in config.patch and "multiprocessing" not in config.concurrency:
            return
        from lowimpact.tools.cover import startup

        os.environ[startup.PROCESS_ENV] = config.serialize()
        if not self.child and not startup.hook_installed():
            print("lowimpact cover: warning: subprocesses will not be measured: %s is not "
                  "installed in site-packages (install lowimpact with pip)" % startup.PTH_FILE,
                  file=sys.stderr)

    def _before_exec(self, exec_function, with_env: bool):
        def exec_after_saving(*args: Any, **kwargs: Any) -> Any:
            try:
                self.stop()
                self.save()
            except Exception as exc:
                print("lowimpact cover: could not save data: %s" % exc, file=sys.stderr)
            from lowimpact.tools.cover import startup

            config = os.environ.get(startup.PROCESS_ENV)
            if with_env and config and len(args) == 3:
                # execve's environment replaces the process's: keep the request.
                args = (args[0], args[1], {**args[2], startup.PROCESS_ENV: config})
            return exec_function(*args, **kwargs)

        return exec_after_saving

    def _on_sigterm(self, signum: int, frame: Optional[types.FrameType]) -> None:
        try:
            self.stop()
            self.save()
        finally:
            signal.signal(signal.SIGTERM, self._old_sigterm or signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    @staticmethod
    def _prepare(cov) -> None:
        """What ``Coverage.start()`` sets up before tracing, without
        coverage.py's own collector and tracer (whose construction alone
        costs tens of milliseconds): the data file (with coverage.py's
        parallel suffix rules) and the file selection."""
        from coverage.disposition import FileDisposition
        from coverage.inorout import InOrOut

        cov._init()
        suffix = cov._data_suffix_specified
        if suffix:
            suffix = suffix if isinstance(suffix, str) else True
        elif cov.config.parallel:
            suffix = True if suffix is None else bool(suffix)
        else:
            suffix = None
        cov._init_data(suffix)
        debug = cov._debug if cov._debug.should("trace") else None
        cov._inorout = InOrOut(
            config=cov.config,
            warn=cov._warn,
            debug=debug,
            include_namespace_packages=cov.config.include_namespace_packages,
        )
        cov._inorout.plugins = cov._plugins
        cov._inorout.disp_class = FileDisposition
        cov._inited_for_start = True
        cov._post_init()

    def _exit(self, status: int) -> None:
        try:
            self.stop()
            self.save()
        except BaseException as exc:   # the process ends anyway: say why data is missing
            print("lowimpact cover: could not save data: %s" % exc, file=sys.stderr)
        finally:
            (self._real_exit or os._exit)(status)

    def _after_fork_in_child(self) -> None:
        """A forked child writes its own parallel data file (combine them)."""
        if self._collector is None or self._saved:
            return
        from coverage.sqldata import CoverageData

        cov = self.coverage
        cov._data = CoverageData(
            basename=cov.config.data_file, suffix=True, warn=cov._warn, debug=cov._debug
        )
        self._lock = threading.Lock()

    def switch_context(self, new_context: Optional[str]) -> Optional[str]:
        """Record under the dynamic context *new_context* from now on
        (joined to the static context with ``|``; None: none), as
        ``Coverage.switch_context()`` does, and return the context that
        was recorded until now, as it does (coverage.py 7.16 and later):
        the full name, with the static context.  While paused, from
        :meth:`resume` on."""
        if self._collector is None or not self._collector.running:
            raise CoverError("Cannot switch context, coverage is not started")
        if self._test_context is not None:
            self.coverage._warn("Conflicting dynamic contexts", slug="dynamic-conflict", once=True)
        return self._context_name(self._collector.switch_context(new_context))

    @property
    def running(self) -> bool:
        """Whether it is measuring (started, not stopped)."""
        return self._collector is not None and self._collector.running

    @property
    def paused(self) -> bool:
        """Between :meth:`pause` and :meth:`resume`."""
        return self._collector is not None and self._collector.paused

    def pause(self) -> None:
        """Record nothing of what runs until :meth:`resume` (pytest-cov's
        ``no_cover``: coverage.py stopped and started again)."""
        if self._collector is not None:
            self._collector.pause()

    def resume(self) -> None:
        """Record again after :meth:`pause`."""
        if self._collector is not None:
            self._collector.resume()

    def stop(self) -> None:
        """Stop measuring; the data stays to be saved."""
        if self._collector is not None and self._collector.running:
            self._collector.stop()
        if self._real_exit is not None and os._exit == self._exit:
            os._exit = self._real_exit

    # -- data measured elsewhere -------------------------------------------

    def select_recorded(self, files: Dict[str, Tuple[Optional[str], Optional[str],
                                                       Optional[str]]]) -> Dict[str, Optional[str]]:
        """coverage.py's decision for each file another process recorded
        everything of (:mod:`~lowimpact.tools.cover.beside`): *files* maps a
        code object's file name to the ``__file__``, ``__name__`` and
        ``__spec__.name`` of the globals it first ran with (which
        coverage.py's ``should_trace`` reads from that frame); the answer, the
        file name to record it under, or None."""
        inorout = self.coverage._inorout
        selected: Dict[str, Optional[str]] = {}
        with _sysconfig_paths_asked_once(), _directories_resolved_once():
            for filename, (dunder_file, name, spec_name) in files.items():
                frame = _RecordedFrame(dunder_file, name, spec_name)
                disposition = inorout.should_trace(filename, frame)
                selected[filename] = disposition.source_filename if disposition.trace else None
        return selected

    def adopt_recorded(self, codes: Dict[int, tuple], lines: Dict[int, Set[int]],
                       branches: Dict[int, Dict[int, Set[int]]],
                       exits: Dict[int, Set[int]]) -> None:
        """Save, from now on, what another process recorded (*codes*: code
        id -> (code object or None without branches, file name under which
        to record it, from :meth:`select_recorded`); the ways that
        process's collector asked :attr:`ways` about, by the same code ids,
        are in :attr:`ways` already."""
        self._collector = _Recorded(codes, lines, branches, exits)
        self._saved = False

    # -- saving ------------------------------------------------------------

    def contexts(self) -> Tuple[Dict[int, tuple], Dict[Optional[str], RawData]]:
        """The measured code objects (``Collector.data()``'s) and the raw
        data recorded under each dynamic context (None: none), in the order
        the contexts first ran."""
        if self._collector is None:
            return {}, {}
        codes, lines, branches, exits = self._collector.data()
        periods = self._collector.periods()
        if not self._collector.paused:
            periods.append((self._collector.context, lines, branches, exits))
        merged: Dict[Optional[str], RawData] = {}
        own: Set[Optional[str]] = set()   # the contexts whose dicts are copies of ours
        for label, *raw in periods:
            into = merged.get(label)
            if into is None:
                merged[label] = tuple(raw)   # (the core's: not changed)
                continue
            if label not in own:
                into = merged[label] = _copy_raw(into)
                own.add(label)
            _merge_raw(into, raw)
        return codes, merged

    def measured(self, codes: Optional[Dict[int, tuple]] = None, raw: Optional[RawData] = None,
                 code_maps: Optional[Dict[int, CodeMap]] = None,
                 idle: Optional[Set[int]] = None,
                 ) -> Tuple[Dict[str, Set[int]], Dict[str, Set[Arc]], Dict[str, list]]:
        """Lines, arcs and branch points per measured file, from the core's
        raw data (*codes* and *raw*: one context's from :meth:`contexts`;
        default: the current data); *code_maps* caches each code's
        :class:`CodeMap` across contexts (default: those made while
        measuring).  A file is there when one of its
        code objects recorded something in *raw* (an empty module only its
        line 0: coverage.py has it too) or is in *idle* (default: all)."""
        if codes is None or raw is None:
            codes, lines, branches, exits = (
                self._collector.data() if self._collector else ({}, {}, {}, {})
            )
        else:
            lines, branches, exits = raw
        if code_maps is None:
            # (With those made while measuring, which know the branch ways
            # the collector may have stopped seeing.)
            code_maps = dict(self.ways.code_maps)
        if self.branch:
            from lowimpact.tools.cover.arcs import CodeMap
        file_lines: Dict[str, Set[int]] = collections.defaultdict(set)
        file_arcs: Dict[str, Set[Arc]] = collections.defaultdict(set)
        file_points: Dict[str, list] = collections.defaultdict(list)
        for key, (code, filename) in codes.items():
            if filename is None or (idle is not None and key not in idle and key not in lines
                                    and key not in branches and key not in exits):
                continue
            if not self.branch:
                # Line 0 too: an empty module's, which coverage.py's C
                # tracer records (its contexts show it).
                file_lines[filename].update(line for line in lines.get(key, ()) if line >= 0)
                continue
            ran = {line for line in lines.get(key, ()) if line > 0}
            file_lines[filename].update(ran)
            arcs = file_arcs[filename]
            arcs.update((line, line) for line in ran)
            if not ran:
                continue
            first_line = self.ways.first_line_of(filename)
            code_map = code_maps.get(key)
            if code_map is None:
                code_map = code_maps[key] = CodeMap(code, first_line)
            statements = {first_line(line) for line in ran}
            arcs.update(code_map.sequential_arcs(statements))
            taken = branches.get(key, {})
            for source, destinations in taken.items():
                for destination in destinations:
                    arc = code_map.arc(source, destination)
                    if arc is not None:
                        arcs.add(arc)
            # The ways the collector may have stopped seeing (implied_of):
            # their statement ran only if they were taken.
            told: Dict[int, Set[int]] = {}
            for source, (_, jump_line, next_line) in (code_map.implied or {}).items():
                from_line = code_map.statement_line(source)
                for direction, line in ((0, jump_line), (1, next_line)):
                    if line and line in statements:
                        arcs.add((from_line, line))
                        told.setdefault(source, set()).add(direction)
            for offset in exits.get(key, ()):
                arc = code_map.exit_arc(offset, statements)
                if arc is not None:
                    arcs.add(arc)
            for point in code_map.branch_points():
                directions = {point.direction(d) for d in taken.get(point.offset, ())}
                directions.update(told.get(point.offset, ()))
                file_points[filename].append(
                    [point.line, point.col, point.end_col,
                     {point.meanings[0]: 0 in directions, point.meanings[1]: 1 in directions}]
                )
        return file_lines, file_arcs, file_points

    def _context_name(self, dynamic: Optional[str]) -> Optional[str]:
        """coverage.py's name for a dynamic context: the static one, joined
        with ``|`` when both are set (``Collector.switch_context``)."""
        static = self.coverage.config.context
        if static:
            return static + "|" + dynamic if dynamic else static
        return dynamic

    def save(self) -> None:
        """Write the data file through coverage.py's ``CoverageData``: all
        that was measured until now, as ``Coverage.save()`` does (a save
        with nothing measured since the last one writes nothing again)."""
        with self._lock:
            if self._saved:
                return
            # Measuring goes on after this save: the next one has more to write.
            self._saved = self._collector is None or not self._collector.running
            cov = self.coverage
            mapper = cov._file_mapper
            data = cov._data
            codes, contexts = self.contexts()
            code_maps: Dict[int, CodeMap] = dict(self.ways.code_maps)
            all_points: Dict[str, list] = {}
            if not contexts:
                contexts = {None: ({}, {}, {})}
            # The files with data in each context, as coverage.py's collector
            # flushes them at each switch (a context without any is not
            # kept); code that recorded nothing goes with the first context.
            idle: Optional[Set[int]] = None
            if len(contexts) > 1:
                idle = set(codes)
                for raw in contexts.values():
                    for recorded in raw:
                        idle.difference_update(recorded)
            for dynamic, raw in contexts.items():
                file_lines, file_arcs, file_points = self.measured(codes, raw, code_maps, idle)
                idle = set() if idle is not None else None
                data.set_context(self._context_name(dynamic))
                if self.branch:
                    data.add_arcs({mapper(f): arcs for f, arcs in file_arcs.items()})
                else:
                    data.add_lines({mapper(f): lines for f, lines in file_lines.items()})
                if len(contexts) == 1:
                    all_points = file_points
                elif self.branch:
                    from lowimpact.tools.cover.subline import merge

                    merge(all_points, file_points)
            file_points = all_points
            unplaced = sorted({codes[key][1] for key, code_map in code_maps.items()
                               if code_map.columns_unknown})
            if unplaced:
                cov._warn("No columns for some branch points of %s: their directions are "
                          "merged per line in 'cover subline' (CPython 3.9 and 3.10 code has no "
                          "columns, and this code is not its source compiled again)"
                          % ", ".join(os.path.relpath(f) for f in unplaced),
                          slug="subline-no-columns")
            cov._post_save_work()
            data.write()
            if self.branch:
                self._save_subline(
                    subline_path(os.path.abspath(cov.config.data_file), data.data_filename()),
                    mapper,
                    file_points,
                )

    @staticmethod
    def _save_subline(path: str, mapper, file_points: Dict[str, list]) -> None:
        from lowimpact.tools.cover.subline import merge, write

        files: Dict[str, list] = {}
        merge(files, {mapper(f): points for f, points in file_points.items()})
        write(path, files)


class _RecordedFrame:
    """What coverage.py's ``should_trace`` reads of the frame a file's code
    first ran in, for a file another process recorded."""

    __slots__ = ("f_globals",)

    def __init__(self, dunder_file: Optional[str], name: Optional[str],
                 spec_name: Optional[str]) -> None:
        self.f_globals: Dict[str, Any] = {}
        if dunder_file is not None:
            self.f_globals["__file__"] = dunder_file
        if name is not None:
            self.f_globals["__name__"] = name
        if spec_name is not None:
            self.f_globals["__spec__"] = types.SimpleNamespace(name=spec_name)


class _Recorded:
    """In place of the collector: the data another process recorded."""

    running = False
    paused = False
    context = None

    def __init__(self, codes: Dict[int, tuple], lines: Dict[int, Set[int]],
                 branches: Dict[int, Dict[int, Set[int]]], exits: Dict[int, Set[int]]) -> None:
        self._data = (codes, lines, branches, exits)

    def data(self) -> tuple:
        return self._data

    def periods(self) -> list:
        return []


@contextlib.contextmanager
def hidden_modules(names: Iterable[str]):
    """The modules *names* are out of ``sys.modules`` meanwhile (for
    coverage.py's looks at the modules there, in a process whose modules are
    not the program's)."""
    hidden = {name: sys.modules.pop(name) for name in list(names) if name in sys.modules}
    try:
        yield
    finally:
        sys.modules.update(hidden)


@contextlib.contextmanager
def _sysconfig_paths_asked_once():
    """coverage.py's ``InOrOut`` asks ``sysconfig.get_paths(scheme)`` of
    every scheme twice (where the standard library is, where third-party
    packages are), and each call copies all of sysconfig's configuration
    variables (over a thousand, one by one in Python) to expand a dozen
    paths.  Meanwhile each scheme's paths are computed once, by
    :func:`expanded_paths` (and each caller gets its own copy)."""
    import sysconfig

    real = sysconfig.get_paths
    answers: Dict[str, Dict[str, str]] = {}

    def get_paths(*args: Any, **kwargs: Any) -> Dict[str, str]:
        if kwargs or len(args) != 1:
            return real(*args, **kwargs)
        if args[0] not in answers:
            answers[args[0]] = expanded_paths(args[0], real)
        return dict(answers[args[0]])

    sysconfig.get_paths = get_paths
    try:
        yield
    finally:
        sysconfig.get_paths = real


def expanded_paths(scheme: str, get_paths: Any = None) -> Dict[str, str]:
    """``sysconfig.get_paths(scheme)`` (*get_paths*: that function), each
    path expanded as it expands them on POSIX -- the user's home, then the
    configuration variables -- reading those variables where they are
    instead of from a copy of them all; elsewhere, or without the helper
    it expands a path with, its own answer."""
    import sysconfig

    get_paths = get_paths or sysconfig.get_paths
    substitute = getattr(sysconfig, "_subst_vars", None)
    if substitute is None or os.name != "posix":
        return get_paths(scheme)
    variables = sysconfig.get_config_vars()
    return {key: os.path.normpath(substitute(os.path.expanduser(value), variables))
            for key, value in get_paths(scheme, expand=False).items()}


@contextlib.contextmanager
def _directories_resolved_once():
    """Before the program starts, coverage.py asks the real path of every
    module already imported (~150, most of them the standard library's and
    coverage.py's own, in a few directories), and ``realpath`` asks
    ``lstat`` of each component of each path.  Meanwhile the real path of
    a directory is asked once: a file's is its directory's joined with its
    name, unless that name is a symbolic link (then it is asked in full).
    Only coverage.py's own copy of ``os.path`` changes (it isolates its
    modules), which the program never sees; nothing changes when that copy
    is not where coverage.py 7.x keeps it."""
    try:
        from coverage.misc import isolate_module
    except ImportError:
        yield
        return
    path = isolate_module(os).path
    real = getattr(path, "realpath", None)
    if real is not os.path.realpath:
        yield
        return
    directories: Dict[str, str] = {}

    def realpath(filename: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(filename, str) or not os.path.isabs(filename):
            return real(filename, *args, **kwargs)
        head, name = os.path.split(filename)
        if name in ("", ".", "..") or head == filename:
            return real(filename)
        resolved = directories.get(head)
        if resolved is None:
            resolved = directories[head] = real(head)
        joined = os.path.join(resolved, name)
        return real(joined) if os.path.islink(joined) else joined

    path.realpath = realpath
    try:
        yield
    finally:
        path.realpath = real


def _copy_raw(raw: RawData) -> RawData:
    lines, branches, exits = raw
    return ({key: set(values) for key, values in lines.items()},
            {key: {source: set(dests) for source, dests in per_source.items()}
             for key, per_source in branches.items()},
            {key: set(values) for key, values in exits.items()})


def _merge_raw(into: RawData, more: RawData) -> None:
    """Add the raw data *more* to *into* (one context's periods, one by one)."""
    lines, branches, exits = into
    for key, values in more[0].items():
        lines.setdefault(key, set()).update(values)
    for key, per_source in more[1].items():
        mine = branches.setdefault(key, {})
        for source, dests in per_source.items():
            mine.setdefault(source, set()).update(dests)
    for key, values in more[2].items():
        exits.setdefault(key, set()).update(values)
