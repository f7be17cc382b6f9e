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
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import threading
import types
from typing import Any, Dict, List, Optional, Set, Tuple

from lowimpact.tools.cover import startup
from lowimpact.tools.cover.arcs import Arc, CodeMap

__all__ = ["CoverError", "Measurement", "TOOL_ID", "subline_path"]

#: sys.monitoring.COVERAGE_ID: the id coverage tools use.
TOOL_ID = 1

#: ``[run] concurrency`` choices: every thread is measured anyway; the
#: children of multiprocessing are measured as other subprocesses are.
_CONCURRENCY = {"thread", "multiprocessing"}

#: ``[run] patch`` choices (``_exit`` and ``fork`` are always on).
_PATCHES = {"_exit", "fork", "subprocess", "execv"}

#: The coverage.py versions whose private members this module relies on.
_NEEDED = ("_init", "_init_data", "_post_init", "_post_save_work", "_data_suffix_specified",
           "_file_mapper")


class CoverError(Exception):
    """A problem the user can fix (configuration, options, environment)."""


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


def _core():
    try:
        from lowimpact import _cover
    except ImportError as exc:
        raise CoverError(
            "lowimpact cover needs CPython 3.11 or newer (this is %d.%d): %s"
            % (sys.version_info[0], sys.version_info[1], exc)
        ) from None
    return _cover


class Measurement:
    """A coverage.py ``Coverage`` configured as ``coverage run`` would be,
    measured by lowimpact's C core.

    Arguments are ``coverage.Coverage``'s (None: from the configuration).
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
    ) -> None:
        self._cover = _core()
        try:
            import coverage
            from coverage.exceptions import CoverageException
        except ImportError:
            raise CoverError(
                "lowimpact cover needs coverage.py: pip install 'lowimpact[cover]'"
            ) from None
        self._coverage_exception = CoverageException
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
        )
        if data_file is not None:
            kwargs["data_file"] = data_file
        try:
            self.coverage = coverage.Coverage(**kwargs)
        except CoverageException as exc:
            raise CoverError(str(exc)) from None
        missing = [name for name in _NEEDED if not hasattr(self.coverage, name)]
        if missing:
            raise CoverError(
                "coverage.py %s lacks %s, which lowimpact cover uses; install a coverage 7.x "
                "that has them" % (coverage.__version__, ", ".join(missing))
            )
        unsupported = set(self.coverage.config.concurrency) - _CONCURRENCY
        if unsupported:
            raise CoverError("concurrency=%s is not supported by lowimpact cover (yet)"
                             % ",".join(sorted(unsupported)))
        unknown = set(self.coverage.config.patch) - _PATCHES
        if unknown:
            raise CoverError("unknown patch %s in [run] patch" % ", ".join(map(repr, sorted(unknown))))
        self.append = append
        self.child = child
        self.branch = bool(self.coverage.get_option("run:branch"))
        self._collector = None
        self._saved = False
        self._lock = threading.Lock()
        self._real_exit = None
        self._old_sigterm = None
        self._first_line: Dict[str, Any] = {}

    # -- running -----------------------------------------------------------

    def start(self) -> None:
        """Read the configuration and start measuring (all threads)."""
        cov = self.coverage
        try:
            self._prepare(cov)
            if self.append:
                cov.load()
            inorout = cov._inorout
            inorout.warn_conflicting_settings()
            if not self.child:
                inorout.warn_already_imported_files()
        except self._coverage_exception as exc:
            raise CoverError(str(exc)) from None

        from lowimpact.tools.target import is_launcher_file

        def should_trace(filename: str, frame: Optional[types.FrameType]) -> Optional[str]:
            # lowimpact's own code (the launcher, saving the data) is not the
            # program's, as coverage.py's own code is not.
            if is_launcher_file(filename):
                return None
            disposition = inorout.should_trace(filename, frame)
            return disposition.source_filename if disposition.trace else None

        self._collector = self._cover.Collector(TOOL_ID, should_trace, branch=self.branch)
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
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        # [run] sigterm = true: a program ended by SIGTERM keeps its data, as
        # under coverage.py (only the main thread may set handlers).
        if cov.get_option("run:sigterm") and threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._measure_subprocesses()

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
        from coverage import CoverageData

        cov = self.coverage
        cov._data = CoverageData(
            basename=cov.config.data_file, suffix=True, warn=cov._warn, debug=cov._debug
        )
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Stop measuring; the data stays to be saved."""
        if self._collector is not None and self._collector.running:
            self._collector.stop()
        if self._real_exit is not None and os._exit == self._exit:
            os._exit = self._real_exit

    # -- saving ------------------------------------------------------------

    def _first_line_of(self, filename: str):
        """coverage.py's own mapping from a line to its statement's first line."""
        mapping = self._first_line.get(filename)
        if mapping is None:
            mapping = lambda line: line  # noqa: E731  (not Python source: lines as they are)
            try:
                mapping = _multiline_mapping(filename)
            except Exception:
                pass
            self._first_line[filename] = mapping
        return mapping

    def measured(self) -> Tuple[Dict[str, Set[int]], Dict[str, Set[Arc]], Dict[str, list]]:
        """Lines, arcs and branch points per measured file, from the core's
        raw data."""
        codes, lines, branches, exits = (
            self._collector.data() if self._collector else ({}, {}, {}, {})
        )
        file_lines: Dict[str, Set[int]] = collections.defaultdict(set)
        file_arcs: Dict[str, Set[Arc]] = collections.defaultdict(set)
        file_points: Dict[str, list] = collections.defaultdict(list)
        for key, (code, filename) in codes.items():
            if filename is None:
                continue
            ran = {line for line in lines.get(key, ()) if line > 0}
            file_lines[filename].update(ran)
            if not self.branch:
                continue
            arcs = file_arcs[filename]
            arcs.update((line, line) for line in ran)
            if not ran:
                continue
            first_line = self._first_line_of(filename)
            code_map = CodeMap(code, first_line)
            arcs.update(code_map.sequential_arcs({first_line(line) for line in ran}))
            taken = branches.get(key, {})
            for source, destinations in taken.items():
                for destination in destinations:
                    arc = code_map.arc(source, destination)
                    if arc is not None:
                        arcs.add(arc)
            for offset in exits.get(key, ()):
                arc = code_map.exit_arc(offset)
                if arc is not None:
                    arcs.add(arc)
            for point in code_map.branch_points():
                directions = {point.direction(d) for d in taken.get(point.offset, ())}
                file_points[filename].append(
                    [point.line, point.col, point.end_col,
                     {point.meanings[0]: 0 in directions, point.meanings[1]: 1 in directions}]
                )
        return file_lines, file_arcs, file_points

    def save(self) -> None:
        """Write the data file (once) through coverage.py's ``CoverageData``."""
        with self._lock:
            if self._saved:
                return
            self._saved = True
            cov = self.coverage
            file_lines, file_arcs, file_points = self.measured()
            mapper = cov._file_mapper
            data = cov._data
            if self.branch:
                data.add_arcs({mapper(f): arcs for f, arcs in file_arcs.items()})
            else:
                data.add_lines({mapper(f): lines for f, lines in file_lines.items()})
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


def _multiline_mapping(filename: str):
    """The first line of the statement of each line of *filename*, as
    coverage.py's ``PythonParser.first_line`` gives it: from its multiline
    map alone (a tokenization), which its ``sysmon`` core also computes,
    where coverage.py has it; else from a full parse."""
    try:
        from coverage.parser import multiline_map_from_text
        from coverage.python import get_python_source
    except ImportError:
        from coverage.parser import PythonParser

        parser = PythonParser(filename=filename)
        parser.parse_source()
        return parser.first_line
    multiline = multiline_map_from_text(get_python_source(filename))
    return lambda line: multiline.get(line, line)
