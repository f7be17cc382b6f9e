"""``cover run`` with coverage.py in a process beside the program.

Importing what a measured run uses of coverage.py (its configuration
reader, file selection and data layer, with the standard-library modules
they import: configparser, tomllib, hashlib, inspect, sqlite3, ...) costs
more than many programs' own start-up: 173-192 M instructions before the
program's first line.  So ``cover run`` forks before the program starts:
the child (the *helper*) reads coverage.py's configuration, builds its file
selection and waits, while the program runs in the process the user
started (its pid, signals, exit status and output as without lowimpact)
under the C core, which records every file that coverage.py could measure.
When the program ends, the helper decides which of the files it ran are
measured, as coverage.py's ``should_trace`` would have at their first
frame (from the ``__file__``, ``__name__`` and ``__spec__`` of that frame's
globals, kept for it), and writes coverage.py's data file; the program's
process waits for it, so the file is complete when ``cover run`` returns.
On a machine with two cores the helper's start-up runs beside the program
instead of before it (it costs as much processor time as before).

Before coverage.py has read anything, the program's process must still know
two things, which it reads from the configuration files' text alone:

- whether to record branches: only when ``--branch`` is given or the word
  ``branch`` appears in one of the files coverage.py may read (coverage.py
  may still say lines only, and the helper writes lines then);
- what coverage.py would certainly not measure, left out from the start so
  that the program does not pay for it: the standard library (without
  ``--pylib``) and installed packages when no ``source`` or ``include`` is
  configured, and what lies outside the ``--source`` directories and
  packages when only the command line names them.  Where the files
  mention ``source`` or ``include`` (or ``--include`` is given), the helper
  is asked file by file, the program waiting for it to be ready first.

Whatever else the configuration may ask for that changes the measured
process itself (``plugins``, ``dynamic_context``, ``debug``, ``sigterm``,
``patch``, ``concurrency``: any mention of those words), ``--append``,
``--concurrency``, a ``COVERAGE_*`` setting in the environment (except
``COVERAGE_RCFILE`` and ``COVERAGE_CORE``), or a platform without ``fork``
makes ``cover run`` measure in one process as before
(:class:`~lowimpact.tools.cover.measure.Measurement`).

What differs from one process (docs/COVER.md): an error in the
configuration is reported when the program ends (exit status 1 unless the
program's own is not 0), not before it starts; coverage.py's warnings at
the start are printed while the program runs.  A child the program forks
writes its own parallel data file, reading the configuration in its own
process when it ends.
"""

from __future__ import annotations

import _thread
import errno
import gc
import marshal
import os
import sys

from lowimpact.tools.cover import CoverError, core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

    #: ``excluded(filename, dunder_file, module)``: see _certainly_excluded().
    Excluded = Callable[[str, Optional[str], Optional[str]], bool]

__all__ = ["Beside", "plan"]

#: Words whose mention in a configuration file makes ``cover run`` measure in
#: one process: settings that change what the measured process must do.
_IN_PROCESS_WORDS = ("plugins", "dynamic_context", "debug", "sigterm", "patch", "concurrency")

#: The files coverage.py reads its configuration from, in the current
#: directory (after ``--rcfile`` or ``COVERAGE_RCFILE``).
_CONFIG_FILES = (".coveragerc", "setup.cfg", "tox.ini", "pyproject.toml")

#: ``COVERAGE_*`` environment variables that change nothing in the measured process.
_HARMLESS_ENVIRONMENT = ("COVERAGE_RCFILE", "COVERAGE_CORE")

#: sys.monitoring.COVERAGE_ID (measure.TOOL_ID).
_TOOL_ID = 1

#: Bytes of the length that comes before each message between the processes.
_LENGTH_BYTES = 8


class Plan:
    """What the program's process knows before coverage.py has read the
    configuration: *branch*, whether to record branches; *excluded*,
    whether coverage.py certainly would not measure a file (None: ask
    coverage.py about every file)."""

    def __init__(self, branch: bool, excluded: Optional[Excluded]):
        self.branch = branch
        self.excluded = excluded


def plan(options: Any) -> Optional[Plan]:
    """The :class:`Plan` of measuring with ``cover run``'s parsed *options*
    beside coverage.py, or None where it must be measured in one process."""
    if not hasattr(os, "fork") or options.append or options.concurrency:
        return None
    if "LOWIMPACT_COVER_PROCESS" in os.environ:
        return None   # (a process another cover run measures: measured as such)
    if any(key.startswith("COVERAGE_") and key not in _HARMLESS_ENVIRONMENT
           for key in os.environ):
        return None
    texts = []
    rcfile = options.rcfile
    if rcfile is True:
        rcfile = os.environ.get("COVERAGE_RCFILE") or True
    names = list(_CONFIG_FILES)
    if rcfile is not True:
        names.insert(0, rcfile)
    for index, name in enumerate(names):
        try:
            with open(name, "rb") as file:
                texts.append(file.read().decode("utf-8", "replace").lower())
        except FileNotFoundError:
            if index == 0 and rcfile is not True:
                return None   # (coverage.py says that it cannot read it)
        except (OSError, ValueError):
            return None
    words = "\n".join(texts)
    if any(word in words for word in _IN_PROCESS_WORDS):
        return None
    return Plan(bool(options.branch) or "branch" in words, _certainly_excluded(options, words))


def _certainly_excluded(options: Any, words: str) -> Optional[Excluded]:
    """``excluded(filename, dunder_file, module)`` for :class:`Plan`: true
    only where coverage.py's ``InOrOut`` would refuse the file whatever the
    rest of the configuration says, by where both names of the file really
    are and by its module's name (*module*: as coverage.py names it from
    the frame, None when it would have to guess from the file name)."""
    if options.include or "include" in words or "source" in words:
        return None
    packages: Tuple[str, ...] = ()
    if options.source:
        # coverage.py's own split: a directory that exists, else a package
        # it matches by module name.
        directories = [entry for entry in options.source if os.path.isdir(entry)]
        packages = tuple(entry for entry in options.source if entry not in directories)
        inside = tuple(_directory(entry) for entry in directories)
        outside = True
    else:
        # Without source or include coverage.py measures neither installed
        # packages nor, without --pylib, the standard library.
        import site

        roots = [path for path in site.getsitepackages() if os.path.isdir(path)]
        user_site = site.getusersitepackages()
        if os.path.isdir(user_site):
            roots.append(user_site)
        if not (options.pylib or "pylib" in words):
            roots.append(os.path.dirname(os.__file__))
        inside = tuple(_directory(root) for root in roots)
        outside = False
    known: Dict[str, bool] = {}

    def excluded_name(filename: Optional[str]) -> bool:
        if not filename or not os.path.isabs(filename):
            return False   # (coverage.py looks for it along sys.path)
        head = os.path.dirname(filename)
        answer = known.get(head)
        if answer is None:
            real = _directory(head)
            answer = known[head] = any(real.startswith(root) for root in inside) != outside
        return answer

    def in_packages(module: Optional[str]) -> bool:
        if module is None:
            return True   # (coverage.py would guess it from the file name)
        return any(module == package or module.startswith(package + ".") for package in packages)

    def excluded(filename: str, dunder_file: Optional[str], module: Optional[str]) -> bool:
        return (excluded_name(filename) and (dunder_file is None or excluded_name(dunder_file))
                and not (packages and in_packages(module)))

    return excluded


def module_name(name: Any, spec_name: Any) -> Optional[str]:
    """The module name coverage.py matches ``--source`` packages with, from a
    frame's ``__name__`` and ``__spec__.name`` (None: coverage.py would take
    it from the file name)."""
    for candidate in (name, spec_name):
        if isinstance(candidate, str) and candidate != "__main__":
            return candidate
    return None


def _directory(path: str) -> str:
    return os.path.join(os.path.realpath(path), "")


class Beside:
    """``cover run``'s measurement with coverage.py in a helper process:
    *kwargs* are :class:`~lowimpact.tools.cover.measure.Measurement`'s, as
    ``cover run`` gives them, *plan* from :func:`plan`."""

    def __init__(self, kwargs: Dict[str, Any], plan: Plan) -> None:
        self.kwargs = kwargs
        self.plan = plan
        self.files: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = {}
        self._collector = None
        self._to_helper = self._from_helper = -1
        self._pipes: Dict[int, Tuple[int, int]] = {}
        self._pid = os.getpid()
        self._directory = os.getcwd()
        self._finished = False
        self._real_exit = None
        self._helper_ready = False
        self._asking = _thread.allocate_lock()

    # -- the program's process ---------------------------------------------

    def start(self) -> None:
        """Start the helper, then measure the program (every thread)."""
        from lowimpact.tools.target import is_launcher_file

        _cover = core()

        to_helper_read, self._to_helper = _pipe()
        self._from_helper, from_helper_write = _pipe()
        self._pipes = {fd: _identity(fd) for fd in (self._to_helper, self._from_helper)}
        # (The helper must not write what this process has not flushed yet.)
        _flush()
        try:
            self._fork_helper(to_helper_read, from_helper_write)
        except OSError as exc:
            self._abandon()
            raise CoverError("cannot start the coverage.py process: %s" % exc) from None
        finally:
            os.close(to_helper_read)
            os.close(from_helper_write)

        files = self.files
        excluded = self.plan.excluded

        def should_trace(filename: str, frame: Any) -> Optional[str]:
            if filename.startswith("<") or is_launcher_file(filename):
                return None
            namespace = frame.f_globals if frame is not None else {}
            dunder_file = namespace.get("__file__")
            dunder_file = str(dunder_file) if dunder_file else None
            name = namespace.get("__name__")
            spec_name = getattr(namespace.get("__spec__"), "name", None)
            if excluded is not None and excluded(filename, dunder_file,
                                                 module_name(name, spec_name)):
                return None
            frame_names = (dunder_file, name if isinstance(name, str) else None,
                           spec_name if isinstance(spec_name, str) else None)
            if excluded is None and not self._helper_measures(filename, frame_names):
                return None
            files[filename] = frame_names
            return filename

        implied_of = None
        if self.plan.branch:
            from lowimpact.tools.cover import bytecode

            if bytecode.MID_LINE_ENTRY:
                implied_of = self._implied_of
        self._collector = _cover.Collector(_TOOL_ID, should_trace, branch=self.plan.branch,
                                           implied_of=implied_of)
        try:
            self._collector.start()
        except ValueError as exc:
            self._abandon()
            raise CoverError(
                "cannot take sys.monitoring tool id %d (%s): is another coverage tool running?"
                % (_TOOL_ID, exc)
            ) from None
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        # What ran before os._exit() is kept, as coverage.py's [run] patch =
        # _exit does.
        self._real_exit = os._exit
        os._exit = self._exit

    def _helper_measures(self, filename: str, frame_names: Tuple[Optional[str], ...]) -> bool:
        """Whether coverage.py measures *filename*, asked of the helper
        (once ready: the program waits for it meanwhile), where the
        configuration's text does not tell what it leaves out (``source``
        or ``include`` in it, ``--include``): recording every file the
        program runs would cost more than the wait, which measuring in one
        process takes before the program starts."""
        with self._asking:
            try:
                if self._pipes_intact() and self._helper_is_ready(wait=True):
                    _send(self._to_helper, ("select", filename, frame_names))
                    kind, answer = _answer(self._from_helper)
                    if kind == "selected":
                        return answer is not None
            except Exception:
                pass
        return True   # (the helper cannot say: kept, for it to choose when the program ends)

    def _helper_is_ready(self, wait: bool) -> Optional[bool]:
        """Whether the helper is ready (*wait*: waiting for it; else False
        while it starts), None where it never will be."""
        if not self._helper_ready:
            if wait:
                kind, _ = _answer(self._from_helper)
            else:
                # (A message this small is written whole, never in part.)
                os.set_blocking(self._from_helper, False)
                try:
                    kind, _ = _answer(self._from_helper)
                except BlockingIOError:
                    return False
                finally:
                    os.set_blocking(self._from_helper, True)
            if kind != "ready":
                return None
            self._helper_ready = True
        return True

    def _implied_of(self, code: Any, filename: str) -> Any:
        # What the lines tell of the branches of a code object needs its
        # file read as coverage.py reads source: the helper answers, once
        # it is ready (until then the collector asks again later).  One
        # question at a time: the pipes are shared by every thread.
        with self._asking:
            try:
                if not self._pipes_intact():
                    return None
                ready = self._helper_is_ready(wait=False)
                if not ready:
                    return NotImplemented if ready is False else None
                _send(self._to_helper, ("implied", id(code), code, filename, self.files[filename]))
                kind, answer = _answer(self._from_helper)
            except Exception:
                # (No way told: the branch keeps reporting; the data is the same.)
                return None
        return answer if kind == "implied" else None

    def _fork_helper(self, requests: int, answers: int) -> None:
        """Start the helper, which is not this process's child but its
        grandchild (its parent ends at once): a program that waits for all
        its children (``os.wait()`` until there are none) must not wait for
        the helper, which waits for the program."""
        middle = os.fork()
        if middle == 0:
            try:
                if os.fork() == 0:
                    os.close(self._to_helper)
                    os.close(self._from_helper)
                    _helper(self.kwargs, self.plan.branch, requests, answers)
            finally:
                os._exit(0)
        os.waitpid(middle, 0)

    def _pipes_intact(self) -> bool:
        """Whether this process's ends of the pipes are still the pipes (a
        program may close descriptors it did not open, and open others that
        get their numbers)."""
        return all(fd >= 0 and _identity(fd) == identity for fd, identity in self._pipes.items())

    def _abandon(self) -> None:
        """The helper goes without writing anything (it ends when it finds
        this process's pipes closed)."""
        for fd in (self._to_helper, self._from_helper):
            if fd >= 0 and _identity(fd) == self._pipes.get(fd):
                os.close(fd)
        self._to_helper = self._from_helper = -1

    def stop(self) -> None:
        """Stop measuring (the data stays for :meth:`finish`)."""
        if self._collector is not None and self._collector.running:
            self._collector.stop()
        if self._real_exit is not None and os._exit == self._exit:
            os._exit = self._real_exit

    def finish(self, save: bool = True) -> Optional[str]:
        """Stop measuring and have the data written (*save* False: the
        program never started, nothing is written); return why it could
        not be written, or None.  An error in coverage.py's configuration
        is raised (:class:`~lowimpact.tools.cover.measure.CoverError`)."""
        if self._finished:
            return None
        self._finished = True
        self.stop()
        if os.getpid() != self._pid:
            return self._save_here() if save else None
        if not save:
            self._abandon()
            return None
        try:
            return self._save_beside()
        finally:
            self._abandon()

    def _recorded(self, selected: Dict[str, Optional[str]]) -> Dict[str, Any]:
        """What the collector recorded of the files coverage.py measures, by
        the names *selected* gives them."""
        codes, lines, branches, exits = self._collector.data()
        kept = {key: (code if self.plan.branch else None, selected[filename])
                for key, (code, filename) in codes.items() if selected.get(filename)}
        return dict(
            codes=kept,
            lines={key: value for key, value in lines.items() if key in kept},
            branches={key: value for key, value in branches.items() if key in kept},
            exits={key: value for key, value in exits.items() if key in kept},
        )

    def _save_beside(self) -> Optional[str]:
        with self._asking:
            return self._save_beside_alone()

    def _save_beside_alone(self) -> Optional[str]:
        if not self._pipes_intact():
            return ("the program closed the pipes to the coverage.py process "
                    "(file descriptors %d and %d)" % (self._to_helper, self._from_helper))
        try:
            _send(self._to_helper, ("files", self.files, _path(), _modules()))
            kind, answer = _answer(self._from_helper)
            if kind == "ready":
                kind, answer = _answer(self._from_helper)
            if kind == "selected":
                _send(self._to_helper, self._recorded(answer))
                kind, answer = _answer(self._from_helper)
            if kind == "error":
                raise CoverError(answer)
            return None if kind == "saved" else answer
        except OSError as exc:
            return "the coverage.py process ended early (%s)" % exc
        except ValueError as exc:   # (marshal: a value of the program's it cannot send)
            return "cannot send the data to the coverage.py process: %s" % exc

    def _save_here(self) -> Optional[str]:
        """A forked child's data: its own parallel data file, written by a
        Measurement of this process (the configuration read as at the start,
        from the directory the run started in)."""
        from lowimpact.tools.cover.measure import Measurement

        where = os.getcwd()
        try:
            os.chdir(self._directory)
            measurement = Measurement(**dict(self.kwargs, parallel=True, child=True))
            measurement.prepare()
            selected = measurement.select_recorded(self.files)
            measurement.adopt_recorded(**self._recorded(selected))
            measurement.save()
        except (CoverError, OSError) as exc:
            return str(exc)
        finally:
            os.chdir(where)
        return None

    def _after_fork_in_child(self) -> None:
        # The helper is the parent's: this process keeps none of its pipes
        # (and no lock another thread of the parent held).
        self._asking = _thread.allocate_lock()
        self._abandon()

    def _exit(self, status: int) -> None:
        try:
            error = self.finish()
            if error:
                print("lowimpact cover: could not save data: %s" % error, file=sys.stderr)
        except BaseException as exc:   # the process ends anyway: say why data is missing
            print("lowimpact cover: could not save data: %s" % exc, file=sys.stderr)
        finally:
            (self._real_exit or os._exit)(status)


# -- the helper ----------------------------------------------------------------

def _helper(kwargs: Dict[str, Any], branch_recorded: bool, requests: int, answers: int) -> None:
    """The helper process's whole life: never returns."""
    # The modules the program's process has imported: coverage.py warns of
    # those it will measure (not of those the helper imports).
    imported = set(sys.modules)
    import signal

    try:
        # Ctrl-C is for the program: the helper still writes its data.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _devnull_on((0,))
        _let_go_of_inherited(keep=(0, 1, 2, requests, answers))
        _serve(kwargs, branch_recorded, requests, answers, imported)
    except BaseException as exc:
        try:
            _send(answers, ("failed", "%s: %s" % (type(exc).__name__, exc)))
        except BaseException:
            pass
    finally:
        _end_helper()


def _end_helper() -> None:
    """End the helper at once (its objects need no freeing), letting go of
    the program's output first."""
    try:
        _let_go_of_output()
    finally:
        os._exit(0)


def _let_go_of_output() -> None:
    """Put /dev/null where the program's stdout and stderr were: whoever
    reads the program's output to its end (``subprocess.run(
    capture_output=True)``, a shell pipe) waits for every process that
    holds it, and the helper has nothing more to say."""
    _flush()
    _devnull_on((1, 2))


def _let_go_of_inherited(keep: Tuple[int, ...]) -> None:
    """Put /dev/null on the descriptors the helper got from the program's
    process but *keep*: one that stays open in the helper keeps a pipe the
    program was given from telling its reader the program closed it.  (Not
    closed: what holds one in the helper, as CPython's perf map under
    ``-X perf`` does, would write into whatever file got its number next.)"""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            open_fds: Iterable[int] = [int(name) for name in os.listdir(listing)]
            break
        except (OSError, ValueError):
            continue
    else:   # (every number the process may use)
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        open_fds = range(min(limit if limit > 0 else 1024, 65536))
    # (A process under valgrind lists valgrind's own descriptors too, which
    # it may not replace: EBADF.)
    _devnull_on([fd for fd in open_fds if fd not in keep and _identity(fd) is not None],
                skip_unusable=True)


def _devnull_on(fds: Sequence[int], skip_unusable: bool = False) -> None:
    """Put /dev/null (read and write) on each of *fds* (one of them closed
    may be where it opens: it stays there); *skip_unusable*: leave those
    the process may not use (EBADF) as they are."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if fd == devnull:
                continue
            try:
                os.dup2(devnull, fd)
            except OSError as exc:
                if not (skip_unusable and exc.errno == errno.EBADF):
                    raise
    finally:
        if devnull not in fds:
            os.close(devnull)


def _serve(kwargs: Dict[str, Any], branch_recorded: bool, requests: int, answers: int,
           imported: Set[str]) -> None:
    from lowimpact.tools.cover.measure import Measurement, hidden_modules

    error = None
    try:
        measurement = Measurement(**kwargs)
        measurement.prepare(imported)
        if measurement.branch and not branch_recorded:
            raise CoverError("branch = true in a configuration lowimpact did not read: "
                             "give --branch on the command line")
        measurement.prepare_saving()
    except CoverError as exc:
        error = str(exc)
    _flush()
    _send(answers, ("ready", None))
    # coverage.py's decision for each file asked about while the program
    # runs (implied_of asks once per code object, several per file).
    decided: Dict[str, Optional[str]] = {}

    def decide(filename: str, frame: Tuple[Optional[str], ...]) -> Optional[str]:
        if filename not in decided:
            decided.update(measurement.select_recorded({filename: frame}))
        return decided[filename]

    while True:
        request = _receive(requests)
        if request is None:
            return   # the program never ran, or its process is gone
        if request[0] == "select":
            _, filename, frame = request
            _send(answers, ("selected", decide(filename, frame) if error is None else None))
            continue
        if request[0] == "implied":
            _, key, code, filename, frame = request
            ways = None
            if error is None:
                try:
                    name = decide(filename, frame)
                    if name is not None:
                        ways = measurement.ways.implied_of(code, name, key)
                except Exception:
                    pass   # (no way told: the branch keeps reporting)
            _send(answers, ("implied", ways))
            continue
        if error is not None:
            _send(answers, ("error", error))
            return
        _, files, path, modules = request
        # The helper ends when the data is written, freeing nothing: the
        # collections its allocations would set off from now on (going
        # through all it imported) find nothing to free.
        gc.disable()
        sys.path[:] = path
        _known_modules(modules)
        _send(answers, ("selected", measurement.select_recorded(files)))
        recorded = _receive(requests)
        if recorded is None:
            return
        measurement.adopt_recorded(**recorded)
        # coverage.py tells a --source package the program never imported
        # by its absence from sys.modules: the helper's own imports (json,
        # ...) are not the program's.
        packages = getattr(measurement.coverage._inorout, "source_pkgs", ())
        with hidden_modules(name for name in packages if name not in modules):
            measurement.save()
        _let_go_of_output()   # (before the program may end)
        _send(answers, ("saved", None))
        _end_helper()


def _path() -> List[str]:
    """``sys.path`` as coverage.py reads it (a program may put paths of
    other kinds there)."""
    return [os.fspath(entry) if isinstance(entry, os.PathLike) else entry
            for entry in sys.path if isinstance(entry, (str, os.PathLike))]


def _modules() -> Dict[str, Optional[str]]:
    """The modules of this process and their files (None: none), for what
    coverage.py looks up in ``sys.modules`` when it saves (the files of the
    ``--source`` packages, to report those that never ran)."""
    modules: Dict[str, Optional[str]] = {}
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        modules[name] = filename if isinstance(filename, str) else None
    return modules


def _known_modules(modules: Dict[str, Optional[str]]) -> None:
    """The program's modules that the helper lacks, as stand-ins in its
    ``sys.modules`` (a name and a file: what coverage.py reads of them)."""
    import types

    for name, filename in modules.items():
        if name not in sys.modules:
            module = types.ModuleType(name)
            if filename is not None:
                module.__file__ = filename
            sys.modules[name] = module


def _flush() -> None:
    """Flush the standard streams (a process may have started without them)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


# -- messages between the processes -------------------------------------------

def _pipe() -> Tuple[int, int]:
    """A pipe whose ends are none of the standard streams' numbers, which a
    process started with one of them closed would otherwise give it (and
    the helper puts /dev/null on 0)."""
    import fcntl

    ends = []
    for fd in os.pipe():
        if fd < 3:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        ends.append(fd)
    return ends[0], ends[1]


def _identity(fd: int) -> Optional[Tuple[int, int]]:
    """What tells a file descriptor's file from another (None: closed)."""
    try:
        stat = os.fstat(fd)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _send(fd: int, value: Any) -> None:
    data = marshal.dumps(value)
    view = memoryview(len(data).to_bytes(_LENGTH_BYTES, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int) -> Any:
    """The next message on *fd*, or None at its end."""
    header = _read_exactly(fd, _LENGTH_BYTES)
    if header is None:
        return None
    data = _read_exactly(fd, int.from_bytes(header, "big"))
    if data is None:
        raise EOFError("a message was cut short")
    return marshal.loads(data)


def _answer(fd: int) -> Tuple[str, Any]:
    """The helper's next answer: ("selected", files), ("saved", None) or
    (anything else, the error)."""
    try:
        answer = _receive(fd)
    except EOFError:
        answer = None
    if answer is None:
        return "failed", "the coverage.py process ended early"
    return answer


def _read_exactly(fd: int, size: int) -> Optional[bytes]:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
