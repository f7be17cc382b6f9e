"""A debugger built like CPython 3.14's bdb monitoring backend, as a judge.

Debuggers are the most demanding common client of ``sys.monitoring``: they
enable LINE and friends for a code object from inside the PY_START (or
PY_RESUME) callback of the very frame that starts running, and expect its
first line to be reported; they return DISABLE everywhere no breakpoint or
stepping applies and call ``restart_events()`` at every stop, expecting a
location that was disabled before a breakpoint was set there to stop; they set
breakpoints in loops that are already running, on any thread. Each session
below is a program, a script of debugger commands, and the stops that native
CPython 3.12 and 3.13 give (the oracle, written next to the session). The same
sessions run on 3.11 through lowimpact's engine, where they must give the same
stops.

A second check of the oracle: the stdlib's settrace-based ``bdb.Bdb``, driven
by the same script on the same interpreter, must stop at the same places,
except where settrace's events legitimately say less than monitoring's; each
such place is written down in the session as ``bdb_stops`` with the reason.
"""

from __future__ import annotations

import bdb
import difflib
import json
import linecache
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from types import CodeType, FrameType, ModuleType
from typing import Any, List, Optional, Sequence, Tuple

import pytest

from conformance.helpers import loop_exit_rel_line
from .monitoring_debugger import (
    FILENAME,
    PROTOCOL_EXCEPTIONS,
    MonitoringDebugger,
    code_objects,
    describe,
    evaluate,
    parse_commands,
    qualname,
)

HERE = os.path.dirname(os.path.abspath(__file__))

# Marks a session that stdlib bdb cannot run the same way at all.
NOT_COMPARABLE: Tuple[str, ...] = ("<not comparable>",)


@dataclass(frozen=True)
class Session:
    name: str
    source: str
    commands: Tuple[str, ...]
    stops: Tuple[str, ...]
    # stdlib bdb's stops where they legitimately differ (None: the same).
    bdb_stops: Optional[Tuple[str, ...]] = None
    # Run in a process of its own (threads that must not outlive a failure).
    isolated: bool = False


def make_session(
    name: str,
    source: str,
    script: Sequence[Tuple[str, Sequence[str]]],
    *,
    bdb_stops: Optional[Sequence[str]] = None,
    isolated: bool = False,
) -> Session:
    """A session written as (commands, stops they lead to) pairs, the first
    pair's commands being empty: the program starts by stopping at its first
    line. Each command line is followed by the stops that the script's
    resuming command reaches, so command and effect read side by side."""
    commands: List[str] = []
    stops: List[str] = []
    for given, reached in script:
        commands.extend(given)
        stops.extend(reached)
    return Session(
        name,
        textwrap.dedent(source),
        tuple(commands),
        tuple(stops),
        None if bdb_stops is None else tuple(bdb_stops),
        isolated,
    )


START = ((), ("line <module>:+0",))


_RUNNING_MODULE_LOOP = """\
    def tick(n):
        return n + 1

    n = 0
    for i in range(3):
        n = tick(n)
        n += 100
    """
# 3.9 leaves the module's implicit return, where the loop's end goes, on
# the body's last line (3.10+: on the `for` line): where that is the
# breakpoint's line, the jump there is a LINE event (a line other than the
# FOR_ITER's) and a stop; settrace gives none for a forward jump into the
# middle of a line.
_LOOP_END_STOP = (("line <module>:+6",) if loop_exit_rel_line(
    compile(textwrap.dedent(_RUNNING_MODULE_LOOP), FILENAME, "exec")) == 6 else ())

SESSIONS = [
    make_session(
        # The breakpoint's code has never run: its PY_START callback gives it
        # LINE events, which must reach the frame that is starting, from its
        # first line on.
        "breakpoint_in_first_call",
        """\
        def add(a, b):
            total = a + b
            return total

        x = add(1, 2)
        y = add(x, 3)
        """,
        [
            START,
            (("break add:+1", "continue"), ("line add:+1",)),
            (("p a", "continue"), ("p a = 1", "line add:+1")),
            (("p a", "continue"), ("p a = 3",)),
        ],
    ),
    make_session(
        # Module-level code: the module's own PY_START gives it local events
        # (the first stop), a breakpoint in a module-level loop stops on
        # every pass, a temporary one once.
        "module_level_breakpoints",
        """\
        a = 1
        b = 2
        for i in range(3):
            a += i
        c = a + b
        d = c * 2
        """,
        [
            START,
            (("tbreak 4", "break 6", "continue"), ("line <module>:+3",)),
            (("p i", "continue"), ("p i = 0", "line <module>:+5")),
            (("p i", "p c", "continue"), ("p i = 2", "p c = 6")),
        ],
    ),
    make_session(
        # ``work`` started while nothing could stop in it, so its PY_START
        # returned DISABLE and it has no local events. A breakpoint set in
        # its loop, at a stop in the callee, must stop in the running frame
        # on the same pass: the debugger gives the running frame's code
        # local events from the callee's LINE callback.
        "breakpoint_set_in_running_loop",
        """\
        def helper(i):
            return i * 2

        def work(n):
            total = 0
            for i in range(n):
                total += helper(i)
                total += 1
            return total

        result = work(3)
        """,
        [
            START,
            (("break helper:+1", "continue"), ("line helper:+1",)),
            (("clear helper:+1", "break work:+4", "continue"), ("line work:+4",)),
            (("p i", "continue"), ("p i = 0", "line work:+4")),
            (("p i", "continue"), ("p i = 1", "line work:+4")),
            (("p i", "p total", "continue"), ("p i = 2", "p total = 8")),
        ],
    ),
    make_session(
        # Module-level variant: the module frame runs the loop; its lines
        # returned DISABLE while it ran under ``continue``.
        "breakpoint_set_in_running_module_loop",
        _RUNNING_MODULE_LOOP,
        [
            START,
            (("break tick:+1", "continue"), ("line tick:+1",)),
            (("break <module>:+6", "continue"), ("line <module>:+6",)),
            (("p i", "p n", "continue"), ("p i = 0", "p n = 1", "line tick:+1")),
            (("clear tick:+1", "continue"), ("line <module>:+6",)),
            (("p i", "continue"), ("p i = 1", "line <module>:+6")),
            (("p i", "continue"), ("p i = 2",) + _LOOP_END_STOP),
        ],
        bdb_stops=[
            "line <module>:+0", "line tick:+1", "line <module>:+6", "p i = 0", "p n = 1",
            "line tick:+1", "line <module>:+6", "p i = 1", "line <module>:+6", "p i = 2",
        ] if _LOOP_END_STOP else None,
    ),
    make_session(
        # restart_events at a stop: line +4 ran (and returned DISABLE) on the
        # first pass; a breakpoint set there afterwards must stop on the
        # next pass.
        "breakpoint_at_disabled_line",
        """\
        def work(n):
            total = 0
            for i in range(n):
                total += i
                total *= 2
            return total

        work(4)
        """,
        [
            START,
            (("break work:+3", "continue"), ("line work:+3",)),
            (("continue",), ("line work:+3",)),
            (("p i", "break work:+4", "continue"), ("p i = 1", "line work:+4")),
            (("p i", "clear work:+3", "continue"), ("p i = 1", "line work:+4")),
            (("p i", "continue"), ("p i = 2", "line work:+4")),
            (("p i", "continue"), ("p i = 3",)),
        ],
    ),
    make_session(
        # restart_events at a stop: ``probe``'s PY_START returned DISABLE on
        # its first call; once a breakpoint is set in it, the next call
        # must start it again (and give it local events).
        "breakpoint_in_function_that_returned_disable",
        """\
        def probe(i):
            return i + 1

        def loop():
            for i in range(3):
                probe(i)
                marker = i

        loop()
        """,
        [
            START,
            (("break loop:+3", "continue"), ("line loop:+3",)),
            (("clear loop:+3", "break probe:+1", "continue"), ("line probe:+1",)),
            (("p i", "continue"), ("p i = 1", "line probe:+1")),
            (("p i", "continue"), ("p i = 2",)),
        ],
    ),
    make_session(
        "step_into_over_and_return",
        """\
        def inner(x):
            y = x * 2
            return y + 1

        def outer():
            a = inner(1)
            b = inner(a)
            return a + b

        outer()
        """,
        [
            START,
            (("break outer:+1", "continue"), ("line outer:+1",)),
            (("step",), ("call inner:+0",)),
            (("step",), ("line inner:+1",)),
            (("next",), ("line inner:+2",)),
            (("next",), ("return inner:+2 3",)),
            # ``next`` at a return stop goes on in the caller.
            (("next",), ("line outer:+2",)),
            (("step",), ("call inner:+0",)),
            (("return",), ("return inner:+2 7",)),
            (("step",), ("line outer:+3",)),
            (("next",), ("return outer:+3 10",)),
            (("continue",), ()),
        ],
    ),
    make_session(
        # ``next`` over a recursive call: the inner frames run the same code,
        # whose locations must stay armed for the outer frame (DISABLE acts
        # per location, not per frame), so the outer return still stops.
        "next_over_recursion",
        """\
        def fact(n):
            if n <= 1:
                return 1
            return n * fact(n - 1)

        fact(3)
        """,
        [
            START,
            (("break fact:+1", "continue"), ("line fact:+1",)),
            (("clear fact:+1", "next"), ("line fact:+3",)),
            (("next",), ("return fact:+3 6",)),
            (("continue",), ()),
        ],
    ),
    make_session(
        "until_leaves_a_loop",
        """\
        def count(n):
            total = 0
            for i in range(n):
                total += i
            return total

        count(3)
        """,
        [
            START,
            (("break count:+3", "continue"), ("line count:+3",)),
            (("next",), ("line count:+2",)),
            (("next",), ("line count:+3",)),
            (("clear count:+3", "until"), ("line count:+4",)),
            (("p total", "continue"), ("p total = 3",)),
        ],
    ),
    make_session(
        # A one-line loop: LINE fires once, the backward JUMP within the line
        # is what reports each further pass (as settrace does).
        "one_line_loop",
        """\
        def spin(n):
            total = 0
            for i in range(n): total += i
            return total

        spin(3)
        """,
        [
            START,
            (("break spin:+2", "continue"), ("line spin:+2",)),
            (("p total", "continue"), ("p total = 0", "line spin:+2")),
            (("p total", "continue"), ("p total = 0", "line spin:+2")),
            (("p total", "continue"), ("p total = 1", "line spin:+2")),
            (("p total", "continue"), ("p total = 3",)),
        ],
    ),
    make_session(
        # Stepping across yields: ``next`` at a yield resumes in the
        # generator (PY_RESUME gives its frame local events again); ``step``
        # stops at the yield, in the consumer, and at the resumption.
        "generator_step_across_yields",
        """\
        def gen(n):
            for i in range(n):
                yield i
            return "done"

        def consume():
            total = 0
            for v in gen(2):
                total += v
            return total

        consume()
        """,
        [
            START,
            (("break gen:+2", "continue"), ("line gen:+2",)),
            (("clear gen:+2", "next"), ("line gen:+1",)),
            (("step",), ("line gen:+2",)),
            (("step",), ("return gen:+2 1",)),
            (("step",), ("line consume:+3",)),
            (("step",), ("line consume:+2",)),
            (("step",), ("call gen:+2",)),
            (("step",), ("line gen:+1",)),
            (("step",), ("line gen:+3",)),
            (("next",), ("return gen:+3 'done'",)),
            (("step",), ("line consume:+4",)),
            (("continue",), ()),
        ],
        # settrace reports a yield and the final return of a generator as the
        # same 'return' event, so bdb ignores both under ``next`` and relies
        # on a StopIteration 'exception' event in the consumer, which is not
        # reported for a for loop (the debuggers here never stop on
        # StopIteration: whether it is reported depends on specialization).
        # Monitoring tells PY_RETURN from PY_YIELD, so ``next`` stops at the
        # real end.
        bdb_stops=[
            "line <module>:+0",
            "line gen:+2",
            "line gen:+1",
            "line gen:+2",
            "return gen:+2 1",
            "line consume:+3",
            "line consume:+2",
            "call gen:+2",
            "line gen:+1",
            "line gen:+3",
        ],
    ),
    make_session(
        # Coroutines driven by hand: ``next`` in a coroutine goes across its
        # suspension (the driver's loop runs meanwhile without stopping);
        # ``return`` runs to its real return, not to its suspension.
        "coroutine_manual_driver",
        """\
        class Ready:
            def __await__(self):
                yield "tick"

        async def child(x):
            await Ready()
            return x + 1

        async def parent():
            a = await child(1)
            b = await child(a)
            return a + b

        coro = parent()
        try:
            while True:
                coro.send(None)
        except StopIteration as stop:
            result = stop.value
        """,
        [
            START,
            (("break child:+1", "continue"), ("line child:+1",)),
            (("next",), ("line child:+2",)),
            (("step",), ("return child:+2 2",)),
            (("step",), ("line parent:+2",)),
            (("step",), ("call child:+0",)),
            (("continue",), ("line child:+1",)),
            (("clear child:+1", "return"), ("return child:+2 3",)),
            (("continue",), ()),
        ],
        # bdb's ``return`` in a coroutine cannot tell its suspensions from
        # its return (one 'return' event for both), so it never stops in the
        # coroutine and waits for a StopIteration in another frame.
        bdb_stops=[
            "line <module>:+0",
            "line child:+1",
            "line child:+2",
            "return child:+2 2",
            "line parent:+2",
            "call child:+0",
            "line child:+1",
        ],
    ),
    make_session(
        # Coroutines under asyncio: the event loop's frames are not the
        # program's and never stop; ``next`` at an await stops when the
        # event loop resumes the coroutine.
        "coroutine_asyncio",
        """\
        import asyncio

        async def fetch(n):
            await asyncio.sleep(0)
            return n * 10

        async def main():
            results = []
            for n in range(2):
                results.append(await fetch(n))
            return results

        out = asyncio.run(main())
        """,
        [
            START,
            (("break fetch:+2", "continue"), ("line fetch:+2",)),
            (("next",), ("return fetch:+2 0",)),
            (("next",), ("line main:+2",)),
            (("step",), ("line main:+3",)),
            (("step",), ("call fetch:+0",)),
            (("step",), ("line fetch:+1",)),
            (("next",), ("line fetch:+2",)),
            (("p n", "continue"), ("p n = 1",)),
        ],
        # As for generators: settrace's single 'return' event for an await
        # that suspends and for the real return makes bdb ignore both under
        # ``next`` in a coroutine; the coroutine's end raises no StopIteration
        # in a Python frame under asyncio (the Task is C code), so bdb runs on
        # to the breakpoint on the next call, and past the end of the next.
        bdb_stops=["line <module>:+0", "line fetch:+2", "line fetch:+2"],
    ),
    make_session(
        # ``step`` while an exception propagates: each frame it leaves
        # reports the exception (RAISE) and its exit (PY_UNWIND, a return
        # of None), then the handler's lines.
        "exception_stepped_through_frames",
        """\
        def fail(x):
            if x:
                raise KeyError(x)
            return x

        def middle(x):
            y = fail(x)
            return y

        def top():
            try:
                middle(1)
            except KeyError:
                return "caught"
            return "none"

        top()
        """,
        [
            START,
            (("break fail:+2", "continue"), ("line fail:+2",)),
            (("step",), ("exception fail:+2 KeyError",)),
            (("step",), ("return fail:+2 None",)),
            (("step",), ("exception middle:+1 KeyError",)),
            (("step",), ("return middle:+1 None",)),
            (("step",), ("exception top:+2 KeyError",)),
            (("step",), ("line top:+3",)),
            (("step",), ("line top:+4",)),
            (("step",), ("return top:+4 'caught'",)),
            (("continue",), ()),
        ],
    ),
    make_session(
        # ``return`` and ``next`` while an exception propagates: ``return``
        # stops at the unwind, ``next`` at the exception arriving in the
        # frame and at the frame's unwind, then in the handler.
        "exception_next_and_return",
        """\
        def fail(x):
            if x:
                raise KeyError(x)
            return x

        def middle(x):
            y = fail(x)
            return y

        def top():
            try:
                middle(1)
            except KeyError:
                return "caught"
            return "none"

        top()
        """,
        [
            START,
            (("break middle:+1", "continue"), ("line middle:+1",)),
            (("step",), ("call fail:+0",)),
            (("return",), ("return fail:+2 None",)),
            (("next",), ("exception middle:+1 KeyError",)),
            (("next",), ("return middle:+1 None",)),
            (("next",), ("exception top:+2 KeyError",)),
            (("next",), ("line top:+3",)),
            (("continue",), ()),
        ],
    ),
    make_session(
        # Threads: a breakpoint hit in the first call of a function on a new
        # thread, stepping there, then a breakpoint set at a stop of the main
        # thread in a loop that another thread is already running (no
        # PY_START will come for it: its code gets local events from the
        # main thread's callback). The main thread waits for the worker's
        # next beat, which comes only after the worker's stop, so the order
        # of stops is fixed.
        "threads",
        """\
        import threading

        def job(n):
            total = n
            total += 1
            return total

        def spin():
            while not done.is_set():
                beat.set()
                done.wait(0.001)

        done = threading.Event()
        beat = threading.Event()
        worker = threading.Thread(target=job, args=(1,), name="worker")
        worker.start()
        worker.join()
        spinner = threading.Thread(target=spin, name="spinner")
        spinner.start()
        beat.wait()
        beat.clear()
        beat.wait()
        done.set()
        spinner.join()
        """,
        [
            START,
            (("break job:+2", "break 21", "continue"), ("line job:+2 [worker]",)),
            (("step",), ("line job:+3 [worker]",)),
            (("continue",), ("line <module>:+20",)),
            (("break spin:+2", "continue"), ("line spin:+2 [spinner]",)),
            (("clear spin:+2", "p done.is_set()", "continue"), ("p done.is_set() = False",)),
        ],
        # settrace is per thread: bdb debugs only the thread it was started
        # in, monitoring events come from every thread.
        bdb_stops=NOT_COMPARABLE,
        isolated=True,
    ),
]


def stops_diff(session: Session, expected: Sequence[str], actual: Sequence[str]) -> str:
    """The commands and a line diff of the stops, for assertion messages."""
    diff = difflib.unified_diff(
        list(expected), list(actual), "expected stops", "actual stops", lineterm="", n=100
    )
    return "session %s, commands %s\n%s" % (session.name, list(session.commands), "\n".join(diff))


def run_isolated(session: Session) -> List[str]:
    """The session's stops from a fresh interpreter running the same
    monitoring module (lowimpact's, which is the interpreter's own on 3.12+)."""
    import lowimpact

    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    request = {"source": session.source, "commands": list(session.commands), "monitoring": "lowimpact"}
    try:
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "monitoring_debugger.py")],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail("session %s did not finish in %ss" % (session.name, exc.timeout))
    assert done.returncode == 0, "session %s: exit %d\n%s" % (
        session.name,
        done.returncode,
        done.stderr,
    )
    return json.loads(done.stdout)["stops"]


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s.name)
def test_session(M: ModuleType, session: Session) -> None:
    if session.isolated:
        actual = run_isolated(session)
    else:
        debugger = MonitoringDebugger(M)
        actual = debugger.run(session.source, session.commands)
        assert debugger.code is not None
        left = [
            qualname(c) for c in code_objects(debugger.code) if M.get_local_events(M.DEBUGGER_ID, c)
        ]
        assert not left, "local events left on %s" % left
    assert actual == list(session.stops), stops_diff(session, session.stops, actual)


# -- the second check: stdlib bdb (settrace) driven by the same script --------


class ScriptedBdb(bdb.Bdb):
    """stdlib bdb with the same front end: the same commands, the same stops."""

    def __init__(self, source: str, commands: Sequence[str]) -> None:
        super().__init__()
        self.source = source
        self.code: CodeType = compile(source, FILENAME, "exec")
        self.commands = parse_commands(self.code, commands)
        self.stops: List[str] = []

    def run_script(self) -> List[str]:
        # set_break checks that the line exists through linecache.
        linecache.cache[FILENAME] = (len(self.source), None, self.source.splitlines(True), FILENAME)
        try:
            self.run(self.code, {"__name__": "__debuggee__"})
        except Exception as exc:
            self.stops.append("uncaught %s" % type(exc).__name__)
        finally:
            self.clear_all_breaks()
            del linecache.cache[FILENAME]
        return self.stops

    # Only the program is debugged, as in MonitoringDebugger.
    def stop_here(self, frame: FrameType) -> bool:
        return frame.f_code.co_filename == FILENAME and super().stop_here(frame)

    def user_call(self, frame: FrameType, argument_list: Any) -> None:
        # bdb calls this also for frames it only traces for breakpoints.
        if self.stop_here(frame):
            self._interact(frame, "call", frame.f_lineno)

    def user_line(self, frame: FrameType) -> None:
        self._interact(frame, "line", frame.f_lineno)

    def user_return(self, frame: FrameType, return_value: Any) -> None:
        self._interact(frame, "return", frame.f_lineno, repr(return_value))

    def user_exception(self, frame: FrameType, exc_info: Any) -> None:
        if frame.f_code.co_filename != FILENAME or issubclass(exc_info[0], PROTOCOL_EXCEPTIONS):
            return  # as in MonitoringDebugger: not a stop, stepping goes on
        self._interact(frame, "exception", frame.f_lineno, exc_info[0].__name__)

    def do_clear(self, arg: str) -> None:
        self.clear_bpbynumber(arg)  # a spent temporary breakpoint

    def _interact(self, frame: FrameType, kind: str, line: int, detail: str = "") -> None:
        self.stops.append(describe(kind, frame, line, detail))
        while self.commands:
            command = self.commands.pop(0)
            verb = command.verb
            if verb in ("break", "tbreak"):
                error = self.set_break(FILENAME, command.line, temporary=verb == "tbreak")
                assert error is None, error
            elif verb == "clear":
                self.clear_break(FILENAME, command.line)
            elif verb == "p":
                self.stops.append(evaluate(command.arg, frame))
            elif verb == "step":
                self.set_step()
                return
            elif verb == "next":
                self.set_next(frame)
                return
            elif verb == "until":
                self.set_until(frame)
                return
            elif verb == "return":
                self.set_return(frame)
                return
            else:
                self.set_continue()
                return
        self.clear_all_breaks()
        self.set_continue()  # out of commands: no breakpoints, so tracing ends


@pytest.mark.parametrize(
    "session", [s for s in SESSIONS if s.bdb_stops is not NOT_COMPARABLE], ids=lambda s: s.name
)
def test_stdlib_bdb_agrees(session: Session) -> None:
    expected = session.stops if session.bdb_stops is None else session.bdb_stops
    previous = sys.gettrace()
    try:
        actual = ScriptedBdb(session.source, session.commands).run_script()
    finally:
        sys.settrace(previous)
    assert actual == list(expected), stops_diff(session, expected, actual)
