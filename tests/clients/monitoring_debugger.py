"""A small debugger core on ``sys.monitoring``, driven by scripted commands.

It is built the way CPython 3.14's ``bdb`` monitoring backend is built, so that
it asks of a monitoring module exactly what that debugger asks:

* PY_START, PY_RESUME, PY_THROW, PY_UNWIND and RAISE are enabled globally;
* when a frame may stop (a breakpoint in its code, or stepping that concerns
  it), its code gets LINE, JUMP, PY_RETURN and PY_YIELD with
  ``set_local_events`` called *from inside the callback* of the frame that is
  running — the events must reach that very frame from its next instruction;
* every callback that cannot lead to a stop returns ``DISABLE``, so code
  without breakpoints runs at full speed;
* at every stop, ``restart_events()`` re-arms what was disabled (a breakpoint
  may have been set at a location that returned DISABLE before), and the
  frames running on every thread are given local events again when they
  now may stop (a breakpoint set in a loop that is already running).

The front end is scripted: a session is a program's source and a list of
commands; its result is the list of stops, in version-independent terms
("line work:+3", where +3 is relative to the first line of the code object).
Commands: ``break SPEC``, ``tbreak SPEC``, ``clear SPEC``, ``p EXPR``, and the
resuming ``step``, ``next``, ``return``, ``until``, ``continue``. SPEC is an
absolute line of the program or ``qualname:+k``. When the commands run out at
a stop, the debugger detaches and the program runs to its end.

Stop kinds follow bdb's, so that the stdlib's settrace debugger can be driven
by the same script for comparison: "call" (PY_START, PY_RESUME, PY_THROW),
"line" (LINE, and a backward JUMP within one line, which settrace reports as a
line), "return" (PY_RETURN, PY_YIELD, and PY_UNWIND with the value None),
"exception" (RAISE).

Stepping rules (pdb's, except where monitoring can tell more than settrace):
``step`` stops at the next event of any debuggee frame of the thread;
``next`` at the next line, return or exception of the current frame (not at
its yields: the frame is resumed later); ``until`` likewise but only at a line
after the current one; ``return`` at the current frame's return or unwind
(for a generator or coroutine its real end, not a yield, since PY_RETURN and
PY_YIELD are told apart). Any stepping command given at a return stop acts as
``step``: the frame is leaving, stepping goes on in its caller. Breakpoints
stop any thread; stepping belongs to the thread that stopped last.

Run as a script, it reads a session as JSON on stdin (``source``,
``commands``, ``monitoring``: "sys" or "lowimpact") and prints the stops as
JSON, for sessions that need a process of their own.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from types import CodeType, FrameType, ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple
from lowimpact._lines import co_lines

FILENAME = "<debuggee>"

RESUMING = ("step", "next", "return", "until", "continue")

# Exceptions that are the iteration protocol's signals, not errors. Whether
# they are reported at all depends on specialization and on the version
# (STOP_ITERATION vs RAISE vs nothing, gh-116090), so the debugger never stops
# on them; neither event is enabled for that reason.
PROTOCOL_EXCEPTIONS = (StopIteration, StopAsyncIteration)


@dataclass(frozen=True)
class Command:
    """One scripted command; ``line`` is the resolved absolute line, if any."""

    verb: str
    arg: str = ""
    line: int = 0


def qualname(code: CodeType) -> str:
    """How stops and specs name code.  3.10 has no co_qualname; there code
    goes by co_name, the same name for the sessions' module-level functions."""
    return getattr(code, "co_qualname", code.co_name)


def code_objects(code: CodeType) -> Iterator[CodeType]:
    """The code object and every code object nested in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from code_objects(const)


def parse_commands(code: CodeType, commands: Sequence[str]) -> List[Command]:
    """Check and resolve a script before the program runs: an error found
    inside a callback would surface as an exception of the debuggee."""
    firstlines = {qualname(c): c.co_firstlineno for c in code_objects(code)}
    parsed = []
    for text in commands:
        verb, _, arg = text.strip().partition(" ")
        arg = arg.strip()
        if verb in RESUMING:
            if arg:
                raise ValueError("%r takes no argument" % text)
            parsed.append(Command(verb))
        elif verb in ("break", "tbreak", "clear"):
            parsed.append(Command(verb, arg, resolve_line(firstlines, arg)))
        elif verb == "p" and arg:
            parsed.append(Command(verb, arg))
        else:
            raise ValueError("unknown command %r" % text)
    return parsed


def resolve_line(firstlines: Dict[str, int], spec: str) -> int:
    """``"12"`` is line 12 of the program; ``"work:+3"`` the third line after
    the first line of the code object whose qualname is ``work``."""
    if spec.isdigit():
        return int(spec)
    qualname, sep, offset = spec.rpartition(":+")
    if not sep or qualname not in firstlines or not offset.isdigit():
        raise ValueError("bad location %r (known: %s)" % (spec, sorted(firstlines)))
    return firstlines[qualname] + int(offset)


def describe(kind: str, frame: FrameType, line: int, detail: str = "") -> str:
    """A stop in version-independent terms: kind, qualname, relative line,
    then the returned value or the exception type, and the thread unless it
    is the main one."""
    code = frame.f_code
    text = "%s %s:+%d" % (kind, qualname(code), line - code.co_firstlineno)
    if detail:
        text += " " + detail
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        text += " [%s]" % thread.name
    return text


def evaluate(expr: str, frame: FrameType) -> str:
    """The ``p`` command's line of output."""
    try:
        value = repr(eval(expr, frame.f_globals, frame.f_locals))
    except Exception as exc:  # a typo in a script should read as such
        value = "%s: %s" % (type(exc).__name__, exc)
    return "p %s = %s" % (expr, value)


@dataclass
class Stepping:
    """What the thread that stopped last asked for.

    ``frame`` is the frame the command was given in (next, until, return);
    ``line`` the line it was given at (until)."""

    mode: str  # "start", "step", "next", "until", "return", "continue"
    thread: int
    frame: Optional[FrameType] = None
    line: int = 0


class MonitoringDebugger:
    """Breakpoints and stepping over one program, on a monitoring module."""

    def __init__(self, monitoring: ModuleType, filename: str = FILENAME) -> None:
        self.M = monitoring
        self.E = monitoring.events
        self.tool: int = monitoring.DEBUGGER_ID
        self.filename = filename
        self.GLOBAL_EVENTS = (
            self.E.PY_START | self.E.PY_RESUME | self.E.PY_THROW | self.E.PY_UNWIND | self.E.RAISE
        )
        self.LOCAL_EVENTS = self.E.LINE | self.E.JUMP | self.E.PY_RETURN | self.E.PY_YIELD
        self.stops: List[str] = []
        self.code: Optional[CodeType] = None  # the program, once compiled
        self.breaks: Dict[int, bool] = {}  # absolute line -> temporary
        self.commands: List[Command] = []
        self.stepping = Stepping("start", threading.get_ident())
        # Code objects given local events, so that detaching can take them
        # back: free_tool_id leaves local events in place (3.12, 3.13).
        self.traced: Set[CodeType] = set()
        self.attached = False
        # Interactions of two threads must not interleave.
        self.lock = threading.RLock()
        self._line_tables: Dict[CodeType, List[Tuple[int, int, Optional[int]]]] = {}
        self._line_sets: Dict[CodeType, Set[int]] = {}

    # -- running a session -------------------------------------------------

    def run(self, source: str, commands: Sequence[str]) -> List[str]:
        """Debug ``source`` as a module under the scripted commands; return the stops."""
        code = self.code = compile(source, self.filename, "exec")
        self.commands = parse_commands(code, commands)
        self.stepping = Stepping("start", threading.get_ident())
        namespace: Dict[str, Any] = {"__name__": "__debuggee__"}
        self.attach()
        try:
            exec(code, namespace)
        except Exception as exc:
            self.stops.append("uncaught %s" % type(exc).__name__)
        finally:
            self.release()
        return self.stops

    def attach(self) -> None:
        M = self.M
        # Raises if another debugger holds the id; then there is nothing of
        # ours to release.
        M.use_tool_id(self.tool, "monitoring_debugger")
        callbacks: Dict[int, Callable[..., Any]] = {
            self.E.PY_START: self._on_start,
            self.E.PY_RESUME: self._on_start,
            self.E.PY_THROW: self._on_throw,
            self.E.LINE: self._on_line,
            self.E.JUMP: self._on_jump,
            self.E.PY_RETURN: self._on_return,
            self.E.PY_YIELD: self._on_yield,
            self.E.PY_UNWIND: self._on_unwind,
            self.E.RAISE: self._on_raise,
        }
        try:
            for event, callback in callbacks.items():
                M.register_callback(self.tool, event, callback)
            M.set_events(self.tool, self.GLOBAL_EVENTS)
        except BaseException:
            self.release()
            raise
        self.attached = True

    def detach(self) -> None:
        """Stop delivering events; the program runs on untouched."""
        with self.lock:
            self.attached = False
            if self.M.get_tool(self.tool) is None:
                return
            self.M.set_events(self.tool, 0)
            for code in self.traced:
                self.M.set_local_events(self.tool, code, 0)
            self.traced.clear()

    def release(self) -> None:
        """Leave no event, callback or tool id behind, whatever happened."""
        try:
            self.detach()
        finally:
            for event in (getattr(self.E, name) for name in dir(self.E) if name.isupper()):
                if event:
                    self.M.register_callback(self.tool, event, None)
            self.M.free_tool_id(self.tool)
            # Locations this debugger disabled would otherwise stay disabled
            # for the next user of the tool id.
            self.M.restart_events()

    # -- callbacks -----------------------------------------------------------
    # Each one takes the monitored frame first (sys._getframe(1) is the frame
    # that runs ``code``), then hands over to a guarded body: an error of the
    # debugger is recorded as a stop rather than raised into the program.

    def _on_start(self, code: CodeType, offset: int) -> Any:
        return self._guard(self._enter, sys._getframe(1), code, True)

    def _on_throw(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        # PY_THROW cannot be disabled (a ValueError, and the callback goes).
        self._guard(self._enter, sys._getframe(1), code, False)
        return None

    def _on_line(self, code: CodeType, line: int) -> Any:
        return self._guard(self._line, sys._getframe(1), code, line)

    def _on_jump(self, code: CodeType, offset: int, destination: int) -> Any:
        return self._guard(self._jump, sys._getframe(1), code, offset, destination)

    def _on_return(self, code: CodeType, offset: int, value: Any) -> Any:
        return self._guard(self._leave, sys._getframe(1), code, "return", value)

    def _on_yield(self, code: CodeType, offset: int, value: Any) -> Any:
        return self._guard(self._leave, sys._getframe(1), code, "yield", value)

    def _on_unwind(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        self._guard(self._leave, sys._getframe(1), code, "unwind", None)
        return None  # not disable-able

    def _on_raise(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        self._guard(self._raise, sys._getframe(1), code, exc)
        return None  # not disable-able

    def _guard(self, body: Callable[..., Any], *args: Any) -> Any:
        if not self.attached:
            return None
        try:
            return body(*args)
        except Exception as exc:
            self.stops.append("debugger error: %s: %s" % (type(exc).__name__, exc))
            self.detach()
            return None

    # -- deciding ------------------------------------------------------------

    def _enter(self, frame: FrameType, code: CodeType, disable_ok: bool) -> Any:
        if code.co_filename != self.filename:
            # Not the program: never stepped into, never stopped in.
            return self.M.DISABLE if disable_ok else None
        if not self._may_stop_in(frame):
            return self.M.DISABLE if disable_ok and self._may_disable(code) else None
        # The pattern under test: local events for the code of the frame that
        # is starting, from inside its PY_START/PY_RESUME callback. Its first
        # line comes right after this callback returns.
        self._trace(code)
        if self._steps_to(frame, "call", frame.f_lineno):
            self._stop(frame, "call", frame.f_lineno)
        return None

    def _line(self, frame: FrameType, code: CodeType, line: int) -> Any:
        if self._steps_to(frame, "line", line):
            self._stop(frame, "line", line)
        elif line in self.breaks:
            # As in bdb, a temporary breakpoint is spent only when it is what
            # stops; stepping onto its line leaves it in place.
            if self.breaks[line]:
                del self.breaks[line]
            self._stop(frame, "line", line)
        else:
            return self.M.DISABLE if self._may_disable(code) else None
        return None

    def _jump(self, frame: FrameType, code: CodeType, offset: int, destination: int) -> Any:
        # Only a backward jump within one line matters: settrace reports such
        # a line again on every pass (one-line loops), LINE does not.
        if destination >= offset:
            return self.M.DISABLE
        line = self._line_of(code, destination)
        if line is None or line != self._line_of(code, offset):
            return self.M.DISABLE
        return self._line(frame, code, line)

    def _leave(self, frame: FrameType, code: CodeType, how: str, value: Any) -> Any:
        if code.co_filename == self.filename and self._steps_to(frame, how, frame.f_lineno):
            self._stop(frame, "return", frame.f_lineno, repr(value))
            return None
        if how == "unwind":
            return None
        return self.M.DISABLE if self._may_disable(code) else None

    def _raise(self, frame: FrameType, code: CodeType, exc: BaseException) -> None:
        if code.co_filename != self.filename or isinstance(exc, PROTOCOL_EXCEPTIONS):
            return
        if self._steps_to(frame, "exception", frame.f_lineno):
            self._stop(frame, "exception", frame.f_lineno, type(exc).__name__)

    def _steps_to(self, frame: FrameType, how: str, line: int) -> bool:
        """Whether the stepping command in force stops at this event.

        ``how`` is "call", "line", "return", "yield", "unwind" or "exception"."""
        s = self.stepping
        if s.thread != threading.get_ident():
            return False
        if s.mode == "start":
            return how == "line"
        if s.mode == "step":
            return True
        if frame is not s.frame:
            return False
        if s.mode == "next":
            return how in ("line", "return", "unwind", "exception")
        if s.mode == "until":
            return how in ("return", "unwind") or (how in ("line", "exception") and line > s.line)
        if s.mode == "return":
            return how in ("return", "unwind")
        return False  # continue

    def _may_stop_in(self, frame: FrameType, thread: Optional[int] = None) -> bool:
        """Whether the frame, running on ``thread`` (the current one by
        default), needs local events: its code has a breakpoint, or the
        stepping command in force may stop in it."""
        if self._has_break(frame.f_code):
            return True
        s = self.stepping
        if s.thread != (threading.get_ident() if thread is None else thread):
            return False
        return s.mode in ("start", "step") or frame is s.frame

    def _may_disable(self, code: CodeType) -> bool:
        """Whether no thread can need this location before the next stop.

        DISABLE acts per location, for every frame and thread running the
        code; a location of the frame being stepped through must stay armed
        even when the event came from another frame of the same code
        (recursion, another thread)."""
        s = self.stepping
        if s.mode in ("start", "step"):
            return False
        if s.mode == "continue":
            return True
        return s.frame is None or code is not s.frame.f_code

    def _has_break(self, code: CodeType) -> bool:
        return any(line in self.breaks for line in self._lines_of(code))

    # -- stopping --------------------------------------------------------------

    def _stop(self, frame: FrameType, kind: str, line: int, detail: str = "") -> None:
        with self.lock:
            self.stops.append(describe(kind, frame, line, detail))
            self._interact(frame, kind, line)
            if not self.attached:
                return
            # What the commands changed may concern locations that returned
            # DISABLE already, and frames that are running now.
            self.M.restart_events()
            self._trace_running_frames()

    def _interact(self, frame: FrameType, kind: str, line: int) -> None:
        while self.commands:
            command = self.commands.pop(0)
            verb = command.verb
            if verb in ("break", "tbreak"):
                self.breaks[command.line] = verb == "tbreak"
            elif verb == "clear":
                self.breaks.pop(command.line, None)
            elif verb == "p":
                self.stops.append(evaluate(command.arg, frame))
            else:
                if kind == "return" and verb != "continue":
                    # The frame is leaving: whatever was asked of it goes on
                    # in its caller, from the next event there.
                    verb = "step"
                self.stepping = Stepping(verb, threading.get_ident(), frame, line)
                return
        self.detach()  # out of commands: let the program run to its end

    def _trace_running_frames(self) -> None:
        # A breakpoint may have been set in a frame that is running already,
        # on this thread (a caller of the stop) or another one; and a step
        # out of the stop reaches its callers. Their code needs local events
        # now: no PY_START will come for them.
        for thread, top in sys._current_frames().items():
            frame: Optional[FrameType] = top
            while frame is not None:
                if frame.f_code.co_filename == self.filename and self._may_stop_in(frame, thread):
                    self._trace(frame.f_code)
                frame = frame.f_back

    def _trace(self, code: CodeType) -> None:
        with self.lock:  # detach may be walking the set on another thread
            if code not in self.traced:
                self.M.set_local_events(self.tool, code, self.LOCAL_EVENTS)
                self.traced.add(code)

    # -- line tables -------------------------------------------------------------

    def _table(self, code: CodeType) -> List[Tuple[int, int, Optional[int]]]:
        table = self._line_tables.get(code)
        if table is None:
            table = self._line_tables[code] = list(co_lines(code))
        return table

    def _lines_of(self, code: CodeType) -> Set[int]:
        lines = self._line_sets.get(code)
        if lines is None:
            lines = self._line_sets[code] = {n for _, _, n in self._table(code) if n is not None}
        return lines

    def _line_of(self, code: CodeType, offset: int) -> Optional[int]:
        for start, end, line in self._table(code):
            if start <= offset < end:
                return line
        return None


def run_session(monitoring: ModuleType, source: str, commands: Sequence[str]) -> List[str]:
    """The stops of one scripted session."""
    return MonitoringDebugger(monitoring).run(source, commands)


def _main() -> None:
    request = json.load(sys.stdin)
    if request.get("monitoring") == "lowimpact":
        import lowimpact.monitoring as monitoring
    else:
        monitoring = sys.monitoring  # type: ignore[attr-defined]
    stops = run_session(monitoring, request["source"], request["commands"])
    json.dump({"stops": stops}, sys.stdout)


if __name__ == "__main__":
    _main()
