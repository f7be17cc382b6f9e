"""Print the ``sys.monitoring`` events of a program, one a line.

``python -m lowimpact trace script.py`` runs the script under a
:class:`Tracer`; from Python::

    with Tracer(sys.stderr, events=["PY_START", "LINE"], scope=Scope(".")):
        ...

Each event is a line of fixed columns::

    PY_START  fib.py:11      fib              @0                 | def fib(n):
    LINE      fib.py:12      fib                                 |     if n < 2:
    LINE      fib.py:13      fib                                 |         return n
    PY_RETURN fib.py:13      fib              @14 -> 1           |         return n

the event; ``file:line`` with the file relative to the program's directory;
the function's qualified name (on 3.10, which has no ``co_qualname``, its
name, as 3.10's tracebacks, :mod:`pdb` and :mod:`cProfile` show it);
``@offset``, the bytecode offset as :mod:`dis` numbers it (LINE events have
none), followed by the event's value; and the source line.  The values are:

- PY_RETURN, PY_YIELD: ``-> value``, the value returned or yielded;
- CALL, C_RETURN, C_RAISE: the callable and ``arg0=`` its first argument
  (``self`` for a method call; left out when the call has no argument);
- RAISE, RERAISE, EXCEPTION_HANDLED, PY_UNWIND, PY_THROW, STOP_ITERATION: the
  exception, ``Type: message``;
- JUMP, BRANCH: ``-> @destination``, the offset where execution continues;
- INSTRUCTION: the instruction, as :mod:`dis` shows it.

Values are shown by a short repr that is cut to length and never raises.
Columns grow, pushing the rest of the line right, when a field is longer than
its column.
"""

from __future__ import annotations

import difflib
import dis
import linecache
import operator
import reprlib
import types
from typing import Callable, Iterable, List, Optional, TextIO, Union

from lowimpact import monitoring
from lowimpact.tools.target import Scope, source_file
from lowimpact._lines import co_lines

__all__ = [
    "DEFAULT_EVENTS",
    "TOOL_IDS",
    "TOOL_NAME",
    "Tracer",
    "available_events",
    "describe_callable",
    "describe_exception",
    "parse_events",
    "short_repr",
]

# How the function column names code: 3.10 has no co_qualname.
_code_name = operator.attrgetter("co_qualname" if hasattr(types.CodeType, "co_qualname") else "co_name")

#: Events traced when none are asked for: the flow through functions and lines.
DEFAULT_EVENTS = ("PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "LINE")

TOOL_NAME = "lowimpact.trace"

#: Tool ids tried in turn.  The ids without a conventional owner come first, so
#: that a debugger, coverage tool or profiler inside the traced program still
#: gets the id it asks for.
TOOL_IDS = (4, 3, 5, 2, 1, 0)

# What the callback of each event receives after the code object.
_ARGUMENTS = {
    "PY_START": "offset",
    "PY_RESUME": "offset",
    "PY_RETURN": "value",
    "PY_YIELD": "value",
    "CALL": "call",
    "C_RETURN": "call",
    "C_RAISE": "call",
    "LINE": "line",
    "INSTRUCTION": "instruction",
    "JUMP": "jump",
    "BRANCH": "jump",
    "BRANCH_LEFT": "jump",
    "BRANCH_RIGHT": "jump",
    "STOP_ITERATION": "exception",
    "RAISE": "exception",
    "RERAISE": "exception",
    "EXCEPTION_HANDLED": "exception",
    "PY_UNWIND": "exception",
    "PY_THROW": "exception",
}

# The events whose callbacks may return DISABLE.  For the others, DISABLE
# unregisters the callback and raises ValueError in the program.
_LOCAL_EVENTS = frozenset(
    ("PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "CALL", "LINE", "INSTRUCTION",
     "JUMP", "BRANCH", "BRANCH_LEFT", "BRANCH_RIGHT", "STOP_ITERATION")
)

_VALUE_WIDTH = 40
# Column widths after the event name; longer fields push the line right.
_WHERE_WIDTH = 14
_FUNCTION_WIDTH = 16
_DETAIL_WIDTH = 18

_repr = reprlib.Repr()
# Attributes rather than keyword arguments: Repr takes no arguments before 3.12.
_repr.maxlevel = 2
_repr.maxstring = _repr.maxother = _repr.maxlong = _VALUE_WIDTH
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = 6
_repr.maxdict = 4

_ONE_LINE = str.maketrans({"\n": "\\n", "\r": "\\r"})

# Callables that carry their own __qualname__ (other objects may answer any
# attribute, so they are shown by their repr).
_NAMED_CALLABLES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    type,
)


def _clip(text: str) -> str:
    text = text.translate(_ONE_LINE)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def short_repr(value: object) -> str:
    """A one-line repr of *value*, at most 40 characters; never raises."""
    try:
        return _clip(_repr.repr(value))
    except Exception:
        return "<%s object at %#x>" % (type(value).__name__, id(value))


def describe_callable(func: object) -> str:
    """The qualified name of a function, method or class; a short repr otherwise."""
    if issubclass(type(func), _NAMED_CALLABLES):
        try:
            name = func.__qualname__  # type: ignore[attr-defined]
        except Exception:
            name = None
        if isinstance(name, str):
            return _clip(name)
    return short_repr(func)


def describe_exception(exc: object) -> str:
    """``Type: message`` for an exception (``Type`` if it has no message); never raises."""
    if not isinstance(exc, BaseException):
        return short_repr(exc)
    try:
        message = str(exc)
    except Exception:
        message = ""
    name = type(exc).__qualname__
    return _clip("%s: %s" % (name, message) if message else name)


def available_events() -> List[str]:
    """The event names this tool can trace here, in the order of their bits."""
    names = [n for n in vars(monitoring.events) if n in _ARGUMENTS]
    return sorted(names, key=lambda n: getattr(monitoring.events, n))


def parse_events(text: str) -> List[str]:
    """Event names from a comma-separated, case-insensitive list.

    ``ALL`` stands for every event except INSTRUCTION.  Raises ValueError,
    naming the valid names, for an unknown name or an empty list.
    """
    valid = available_events()
    chosen = set()
    for item in text.split(","):
        name = item.strip().upper()
        if not name:
            continue
        if name == "ALL":
            chosen.update(n for n in valid if n != "INSTRUCTION")
        elif name in valid:
            chosen.add(name)
        else:
            close = difflib.get_close_matches(name, valid + ["ALL"], n=1)
            hint = " (did you mean %s?)" % close[0] if close else ""
            raise ValueError(
                "unknown event %r%s; valid names: ALL, %s" % (item.strip(), hint, ", ".join(valid))
            )
    if not chosen:
        raise ValueError("no event names given; valid names: ALL, %s" % ", ".join(valid))
    return [n for n in valid if n in chosen]


class _File:
    """A traced source file: its short name and its lines."""

    __slots__ = ("name", "lines")

    def __init__(self, name: str, lines: List[str]) -> None:
        self.name = name
        self.lines = lines

    def source(self, line: int) -> str:
        return self.lines[line - 1].rstrip() if 0 < line <= len(self.lines) else ""


class _CodeMap:
    """The line and the instruction at each offset of one code object."""

    __slots__ = ("code", "lines", "instructions")

    def __init__(self, code: types.CodeType) -> None:
        # Holding the code object keeps its id, the key of this map, unique.
        self.code = code
        self.lines: List[Optional[int]] = [None] * (len(code.co_code) // 2)
        for start, end, line in co_lines(code):
            self.lines[start // 2 : end // 2] = [line] * ((end - start) // 2)
        self.instructions: Optional[dict] = None

    def line_at(self, offset: int) -> Optional[int]:
        index = offset // 2
        return self.lines[index] if index < len(self.lines) else None

    def instruction_at(self, offset: int) -> str:
        if self.instructions is None:
            self.instructions = {
                i.offset: ("%s %s" % (i.opname, _clip(i.argrepr))).rstrip()
                for i in dis.get_instructions(self.code)
            }
        return self.instructions.get(offset, "?")


class Tracer:
    """Writes the events of code in *scope* to *stream*, one a line.

    *events* are names from :func:`available_events`; C_RETURN and C_RAISE
    bring CALL with them, since ``sys.monitoring`` delivers them only with it.
    :meth:`start` takes the first free id of :data:`TOOL_IDS`; :meth:`stop`
    gives it back and flushes *stream* (which stays open).  Code outside
    *scope* costs one callback per location: the callback returns DISABLE
    (events that cannot be disabled, such as RAISE, are only filtered).  If
    writing fails (closed stream, broken pipe), tracing goes quiet instead of
    disturbing the program.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        events: Iterable[str] = DEFAULT_EVENTS,
        scope: Optional[Scope] = None,
    ) -> None:
        valid = available_events()
        wanted = {e.upper() for e in events}
        unknown = wanted.difference(valid)
        if unknown:
            raise ValueError("unknown events: %s" % ", ".join(sorted(unknown)))
        if not wanted:
            raise ValueError("no events to trace")
        if wanted & {"C_RETURN", "C_RAISE"}:
            wanted.add("CALL")
        self.events = [e for e in valid if e in wanted]
        self.scope = scope if scope is not None else Scope()
        self.tool_id: Optional[int] = None
        self._stream = stream
        self._write = stream.write
        self._label_width = max(len(e) for e in self.events)
        self._files: dict = {}  # co_filename -> _File, or False when not traced
        self._codes: dict = {}  # id(code) -> _CodeMap
        self._output_lost = False

    def __enter__(self) -> "Tracer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Claim a tool id, register the callbacks and turn the events on."""
        if self.tool_id is not None:
            raise RuntimeError("the tracer is already started")
        M = monitoring
        tool = _claim_tool_id()
        try:
            mask = 0
            for event in self.events:
                bit = getattr(M.events, event)
                M.register_callback(tool, bit, self._callback(event))
                mask |= bit
            if {"C_RETURN", "C_RAISE"} & set(self.events):
                # sys.monitoring takes CALL, C_RETURN and C_RAISE together or
                # not at all; a C event without a callback is dropped.
                mask |= M.events.C_RETURN | M.events.C_RAISE
            M.set_events(tool, mask)
        except BaseException:
            self._release(tool)
            raise
        self.tool_id = tool

    def stop(self) -> None:
        """Turn the events off, free the tool id and flush the stream."""
        if self.tool_id is None:
            return
        tool, self.tool_id = self.tool_id, None
        self._release(tool)
        try:
            self._stream.flush()
        except Exception:
            pass

    def _release(self, tool: int) -> None:
        M = monitoring
        M.set_events(tool, 0)
        for event in self.events:
            M.register_callback(tool, getattr(M.events, event), None)
        M.free_tool_id(tool)

    def _file(self, filename: str) -> Union[_File, bool]:
        """The _File for *filename*, or False if its code is not traced."""
        if self._output_lost or filename not in self.scope:
            file = False
        else:
            source = source_file(filename)
            lines = linecache.getlines(source) if source is not None else []
            file = _File(self.scope.short_name(filename), lines)
        self._files[filename] = file
        return file

    def _code_map(self, code: types.CodeType) -> _CodeMap:
        found = self._codes.get(id(code))
        if found is None:
            found = self._codes[id(code)] = _CodeMap(code)
        return found

    def _callback(self, event: str) -> Callable:
        files = self._files
        find_file = self._file
        write = self._write
        label = event.ljust(self._label_width)
        not_traced = monitoring.DISABLE if event in _LOCAL_EVENTS else None
        describe = self._describer(_ARGUMENTS[event])

        # first: the offset, or the line number for LINE.
        def callback(code: types.CodeType, first: int, *rest: object) -> object:
            file = files.get(code.co_filename)
            if file is None:
                file = find_file(code.co_filename)
            if not file:
                return not_traced
            line, detail = describe(code, first, *rest)
            where = "%s:%d" % (file.name, line) if line else file.name
            text = "%s %-*s %-*s %-*s | %s" % (
                label,
                _WHERE_WIDTH, where,
                _FUNCTION_WIDTH, _code_name(code),
                _DETAIL_WIDTH, detail,
                file.source(line) if line else "",
            )
            try:
                write(text.rstrip() + "\n")
            except Exception:
                self._lose_output()
            return None

        return callback

    def _describer(self, arguments: str) -> Callable:
        """For one kind of callback arguments: (code, *arguments) -> (line, detail)."""
        code_map = self._code_map
        missing = monitoring.MISSING

        def for_line(code: types.CodeType, line: int) -> tuple:
            return line, ""

        def for_offset(code: types.CodeType, offset: int) -> tuple:
            return code_map(code).line_at(offset), "@%d" % offset

        def for_value(code: types.CodeType, offset: int, value: object) -> tuple:
            return code_map(code).line_at(offset), "@%d -> %s" % (offset, short_repr(value))

        def for_call(code: types.CodeType, offset: int, func: object, arg0: object) -> tuple:
            detail = "@%d %s" % (offset, describe_callable(func))
            if arg0 is not missing:
                detail += " arg0=" + short_repr(arg0)
            return code_map(code).line_at(offset), detail

        def for_exception(code: types.CodeType, offset: int, exc: object) -> tuple:
            return code_map(code).line_at(offset), "@%d %s" % (offset, describe_exception(exc))

        def for_jump(code: types.CodeType, offset: int, destination: int) -> tuple:
            return code_map(code).line_at(offset), "@%d -> @%d" % (offset, destination)

        def for_instruction(code: types.CodeType, offset: int) -> tuple:
            found = code_map(code)
            return found.line_at(offset), "@%d %s" % (offset, found.instruction_at(offset))

        return {
            "line": for_line,
            "offset": for_offset,
            "value": for_value,
            "call": for_call,
            "exception": for_exception,
            "jump": for_jump,
            "instruction": for_instruction,
        }[arguments]

    def _lose_output(self) -> None:
        # Nothing can be shown any more: make every location look untraced so
        # that local events get disabled and the program runs at full speed.
        self._output_lost = True
        self._files.clear()


def _claim_tool_id() -> int:
    for tool in TOOL_IDS:
        try:
            monitoring.use_tool_id(tool, TOOL_NAME)
        except ValueError:
            continue
        return tool
    raise RuntimeError("every sys.monitoring tool id is in use")
