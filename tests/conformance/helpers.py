"""Helpers shared by the conformance tests.

Everything here is written against the public ``sys.monitoring`` surface so
that the same expectations hold for native 3.12/3.13 (the oracle) and for
lowimpact's engine.  Offsets are never literals: they are looked up with
:mod:`dis` on the running interpreter.  Lines are reported relative to the
``co_firstlineno`` of the code object that produced the event, so moving a
test around in its file does not change its expectations.
"""

from __future__ import annotations

import dis
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from lowimpact._lines import co_lines

CodeLike = Union[types.CodeType, types.FunctionType, types.MethodType, Callable[..., Any]]

# The tool id used by single-tool tests.  Not one of the predefined ids, so a
# failure message mentioning it is easy to tell apart from a real tool.
TOOL = 3

LOCAL_EVENT_NAMES = (
    "PY_START",
    "PY_RESUME",
    "PY_RETURN",
    "PY_YIELD",
    "CALL",
    "LINE",
    "INSTRUCTION",
    "JUMP",
    "BRANCH",
    "STOP_ITERATION",
)
NON_LOCAL_EVENT_NAMES = ("RAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_THROW", "RERAISE")
ANCILLARY_EVENT_NAMES = ("C_RETURN", "C_RAISE")
ALL_EVENT_NAMES = LOCAL_EVENT_NAMES + NON_LOCAL_EVENT_NAMES + ANCILLARY_EVENT_NAMES
EXCEPTION_EVENT_NAMES = ("RAISE", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_THROW", "STOP_ITERATION")
CALL_LIKE_EVENT_NAMES = ("CALL", "C_RETURN", "C_RAISE")
RETURN_OPNAMES = ("RETURN_VALUE", "RETURN_CONST")


def event_bit(M: Any, name: str) -> int:
    return getattr(M.events, name)


def event_names(M: Any, event_set: int) -> list[str]:
    """Names of the single-bit events contained in *event_set*."""
    return [name for name in ALL_EVENT_NAMES if event_set & event_bit(M, name)]


def group1_events(M: Any) -> int:
    """The events of the engine-core group (generator/function lifecycle and LINE)."""
    E = M.events
    return E.PY_START | E.PY_RESUME | E.PY_RETURN | E.PY_YIELD | E.LINE


# --------------------------------------------------------------------------
# Code objects, instructions and lines


def code_of(target: CodeLike) -> types.CodeType:
    if isinstance(target, types.CodeType):
        return target
    if isinstance(target, types.MethodType):
        target = target.__func__
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError("no code object in %r" % (target,))
    return code


def nested_codes(target: CodeLike) -> list[types.CodeType]:
    """The code object of *target* and every code object nested in its constants."""
    found: list[types.CodeType] = []
    pending = [code_of(target)]
    while pending:
        code = pending.pop()
        if any(code is seen for seen in found):
            continue
        found.append(code)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def nested_code(target: CodeLike, name: str) -> types.CodeType:
    """The one code object called *name* nested (at any depth) in *target*."""
    matches = [c for c in nested_codes(target) if c.co_name == name]
    assert len(matches) == 1, "expected one code object named %r, found %d" % (name, len(matches))
    return matches[0]


def instructions(target: CodeLike) -> list[dis.Instruction]:
    return list(dis.get_instructions(code_of(target)))


def traceback_entries(tb: Any) -> list:
    """The entries of a traceback, outermost first."""
    found = []
    while tb is not None:
        found.append(tb)
        tb = tb.tb_next
    return found


def offsets_of(target: CodeLike, *opnames: str) -> list[int]:
    """Offsets of the instructions of *target* whose opname is one of *opnames*."""
    return [i.offset for i in instructions(target) if i.opname in opnames]


def offset_of(target: CodeLike, *opnames: str) -> int:
    """The offset of the only instruction of *target* with one of *opnames*."""
    found = offsets_of(target, *opnames)
    assert len(found) == 1, "expected one of %s in %r, found offsets %s" % (opnames, code_of(target), found)
    return found[0]


def resume_offset(target: CodeLike) -> int:
    """Offset of the RESUME that starts the frame (the PY_START offset).

    3.10 has no RESUME: a frame starts at its first instruction, after the
    GEN_START of a generator or coroutine."""
    if sys.version_info < (3, 11):
        first = instructions(target)[:2]
        return first[1].offset if first[0].opname == "GEN_START" else first[0].offset
    return offsets_of(target, "RESUME")[0]


def start_lasti(target: CodeLike) -> int:
    """The f_lasti of a frame seen from its PY_START callback: its RESUME's.

    3.10 has no RESUME and no instruction on the def line: the frame stands
    before its first instruction (-1, on the def line), as 3.10's own 'call'
    trace event shows it."""
    return -1 if sys.version_info < (3, 11) else resume_offset(target)


def resume_offsets_after_yield(target: CodeLike) -> list[int]:
    """Offsets of the RESUMEs that follow a suspension point (the PY_RESUME offsets).

    On 3.10 a frame resumes after its YIELD_VALUE, or at its YIELD_FROM,
    which runs again."""
    if sys.version_info < (3, 11):
        instrs = instructions(target)
        return [instrs[k + 1].offset if i.opname == "YIELD_VALUE" else i.offset
                for k, i in enumerate(instrs) if i.opname in ("YIELD_VALUE", "YIELD_FROM")]
    return offsets_of(target, "RESUME")[1:]


def return_offsets(target: CodeLike) -> list[int]:
    return offsets_of(target, *RETURN_OPNAMES)


def yield_offsets(target: CodeLike) -> list[int]:
    # 3.10's `yield from` and `await` suspend at their YIELD_FROM.
    if sys.version_info < (3, 11):
        return offsets_of(target, "YIELD_VALUE", "YIELD_FROM")
    return offsets_of(target, "YIELD_VALUE")


def instruction_offsets(target: CodeLike) -> list[int]:
    """Offsets of every real instruction (inline caches excluded)."""
    return [i.offset for i in instructions(target)]


def next_instruction_offset(target: CodeLike, offset: int) -> int:
    """Offset of the instruction that follows the one at *offset* (caches skipped)."""
    offs = instruction_offsets(target)
    return offs[offs.index(offset) + 1]


def line_of_offset(target: CodeLike, offset: int) -> Optional[int]:
    """The source line of the instruction at *offset*, from ``co_lines()``."""
    for start, end, line in co_lines(code_of(target)):
        if start <= offset < end:
            return line
    raise AssertionError("offset %d is outside %r" % (offset, code_of(target)))


def rel_line_of_offset(target: CodeLike, offset: int) -> Optional[int]:
    line = line_of_offset(target, offset)
    return None if line is None else line - code_of(target).co_firstlineno


def with_exit_rel_line(target: CodeLike) -> Optional[int]:
    """The line (relative) of the __exit__ call of a with statement whose body
    ends by storing a local: its None arguments, the first LOAD_CONST after
    that store.  3.10+ give it the `with` line, 3.9 the body's last line."""
    store = offset_of(target, "STORE_FAST")
    exit_call = next(i.offset for i in instructions(target) if i.offset > store and i.opname == "LOAD_CONST")
    return rel_line_of_offset(target, exit_call)


def first_offset_of_line(target: CodeLike, rel_line: int) -> int:
    """Offset of the first instruction (in code order) on line ``co_firstlineno + rel_line``."""
    code = code_of(target)
    line = code.co_firstlineno + rel_line
    for instr in instructions(code):
        if line_of_offset(code, instr.offset) == line:
            return instr.offset
    raise AssertionError("no instruction on relative line %d" % rel_line)


def jump_target(target: CodeLike, offset: int) -> int:
    """The jump target of the jump instruction at *offset*, as dis reports it."""
    for instr in instructions(target):
        if instr.offset == offset:
            assert instr.opcode in dis.hasjrel or instr.opcode in dis.hasjabs, instr
            return instr.argval
    raise AssertionError("no instruction at offset %d" % offset)


def opname_at(target: CodeLike, offset: int) -> str:
    for instr in instructions(target):
        if instr.offset == offset:
            return instr.opname
    raise AssertionError("no instruction starts at offset %d" % offset)


def is_branch_opname(opname: str) -> bool:
    """Conditional jumps and FOR_ITER: the instructions that report BRANCH."""
    return opname == "FOR_ITER" or opname.startswith("POP_JUMP") or opname.startswith("JUMP_IF_")


def is_jump_opname(opname: str) -> bool:
    """Unconditional jumps that report JUMP (not the NO_INTERRUPT ones of yield from/await)."""
    return opname in ("JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_ABSOLUTE")


def for_iter_exit_offset(target: CodeLike, offset: int) -> int:
    """Where execution continues when the FOR_ITER at *offset* finds its iterator exhausted.

    The jump target of FOR_ITER is the loop's cleanup, which an exhausted
    FOR_ITER skips: END_FOR where it exists (it pops both the iterator and
    the value, per dis.stack_effect), or END_FOR plus the POP_TOP after it
    where END_FOR pops only one.  Without END_FOR the target itself.
    """
    code = code_of(target)
    dest = jump_target(code, offset)
    if opname_at(code, dest) == "END_FOR":
        popped = -dis.stack_effect(dis.opmap["END_FOR"])
        dest = next_instruction_offset(code, dest)
        while popped < 2 and opname_at(code, dest) == "POP_TOP":
            popped += 1
            dest = next_instruction_offset(code, dest)
    return dest


def loop_exit_rel_line(target: CodeLike, index: int = 0) -> Optional[int]:
    """The line (relative) of the instruction where the *index*-th for loop
    of *target* (in code order) goes on when its iterator is exhausted: a
    jump back to an outer loop or an implicit return is on the `for` line
    from 3.10 on (PEP 626), on the body's or the last line on 3.9.  3.9
    reports a line where a jump lands only where its table starts one (the
    engine as 3.9's own line events): elsewhere the `for` line, no LINE."""
    for_iter = offsets_of(target, "FOR_ITER")[index]
    dest = for_iter_exit_offset(target, for_iter)
    if sys.version_info < (3, 10) and dest not in {offset for offset, _ in dis.findlinestarts(code_of(target))}:
        return rel_line_of_offset(target, for_iter)
    return rel_line_of_offset(target, dest)


def branch_destinations(target: CodeLike, offset: int) -> tuple[int, int]:
    """(not taken, taken) destinations of the branch instruction at *offset*."""
    code = code_of(target)
    if opname_at(code, offset) == "FOR_ITER":
        return next_instruction_offset(code, offset), for_iter_exit_offset(code, offset)
    return next_instruction_offset(code, offset), jump_target(code, offset)


def handler_offsets(target: CodeLike) -> set[int]:
    """Targets of the exception table: where EXCEPTION_HANDLED can point.

    3.10 has no exception table: its handlers are the targets of the
    SETUP_* instructions."""
    if sys.version_info < (3, 11):
        setups = ("SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH")
        return {i.argval for i in instructions(target) if i.opname in setups}
    return {entry.target for entry in dis.Bytecode(code_of(target)).exception_entries}


# --------------------------------------------------------------------------
# Tools


class Tool:
    """A tool id in use for the duration of a test; :meth:`close` undoes everything.

    Local events set through :meth:`set_local` are remembered so that they can
    be reset: no API lists the code objects that carry local events.
    """

    def __init__(self, M: Any, tool_id: int = TOOL, name: str = "conformance") -> None:
        self.M = M
        self.id = tool_id
        self.name = name
        self._local_codes: list[types.CodeType] = []
        M.use_tool_id(tool_id, name)

    def register(self, event: int, func: Optional[Callable[..., Any]]) -> Any:
        return self.M.register_callback(self.id, event, func)

    def set_events(self, event_set: int) -> None:
        self.M.set_events(self.id, event_set)

    def get_events(self) -> int:
        return self.M.get_events(self.id)

    def set_local(self, target: CodeLike, event_set: int) -> None:
        code = code_of(target)
        if not any(code is c for c in self._local_codes):
            self._local_codes.append(code)
        self.M.set_local_events(self.id, code, event_set)

    def get_local(self, target: CodeLike) -> int:
        return self.M.get_local_events(self.id, code_of(target))

    def forget_local(self, target: CodeLike) -> None:
        """Record that a test reset the local events of *target* some other way."""
        code = code_of(target)
        self._local_codes = [c for c in self._local_codes if c is not code]

    def close(self) -> None:
        M = self.M
        if M.get_tool(self.id) is None:
            # The test freed the tool; take it back so that the events can be reset.
            M.use_tool_id(self.id, self.name)
        M.set_events(self.id, 0)
        for code in self._local_codes:
            M.set_local_events(self.id, code, 0)
        self._local_codes.clear()
        for name in ALL_EVENT_NAMES:
            M.register_callback(self.id, event_bit(M, name), None)
        M.free_tool_id(self.id)


# --------------------------------------------------------------------------
# Recording events


@dataclass
class Event:
    """One callback invocation: the event name, the code object and the other arguments."""

    name: str
    code: Any
    args: tuple

    @property
    def offset(self) -> int:
        assert self.name != "LINE"
        return self.args[0]

    @property
    def line(self) -> int:
        assert self.name == "LINE"
        return self.args[0]

    @property
    def rel_line(self) -> int:
        return self.line - self.code.co_firstlineno

    @property
    def value(self) -> Any:
        """The third argument: returned/yielded value, exception, destination or callable."""
        return self.args[1]

    def compact(self) -> tuple:
        """A short readable tuple; offsets are left out where a value says more."""
        n, name, a = self.name, self.code.co_name, self.args
        if n == "LINE":
            return (n, name, self.rel_line)
        if n in ("PY_START", "PY_RESUME"):
            return (n, name)
        if n in ("PY_RETURN", "PY_YIELD"):
            return (n, name, a[1])
        if n in CALL_LIKE_EVENT_NAMES:
            return (n, name, a[1], a[2])
        if n in EXCEPTION_EVENT_NAMES:
            return (n, name, type(a[1]).__name__)
        if n in ("JUMP", "BRANCH"):
            return (n, name, a[0], a[1])
        if n == "INSTRUCTION":
            return (n, name, a[0])
        raise AssertionError(n)


class Recorder:
    """Records the events of chosen code objects on one tool.

    Used as a context manager: entering registers one callback per requested
    event and enables the events (globally, or locally on the chosen code
    objects); leaving turns them off and unregisters the callbacks.  Events
    of other code (pytest, the test function itself) are ignored, so the
    recorded list holds exactly the events of the code under test: the given
    code objects, plus any code object whose ``co_filename`` is *filename*
    (for code compiled while recording), or everything with *record_all*.

    *returns* is what the callbacks return (e.g. ``M.DISABLE``); it may be a
    function of the :class:`Event`, returning the value for that event.
    """

    def __init__(
        self,
        tool: Tool,
        event_set: int,
        *targets: CodeLike,
        nested: bool = False,
        local: bool = False,
        returns: Any = None,
        record_all: bool = False,
        filename: Optional[str] = None,
    ) -> None:
        self.tool = tool
        self.M = tool.M
        self.event_set = event_set
        self.local = local
        self.returns = returns
        self.record_all = record_all
        self.filename = filename
        codes: list[types.CodeType] = []
        for t in targets:
            codes.extend(nested_codes(t) if nested else [code_of(t)])
        self.codes = codes
        self._ids = {id(c) for c in codes}
        self.events: list[Event] = []
        self.active = False

    def wants(self, code: Any) -> bool:
        if self.record_all or id(code) in self._ids:
            return True
        return self.filename is not None and getattr(code, "co_filename", None) == self.filename

    def watch(self, *targets: CodeLike) -> None:
        """Also record the events of *targets* (for code created while recording)."""
        for t in targets:
            code = code_of(t)
            self.codes.append(code)
            self._ids.add(id(code))

    def callback(self, name: str) -> Callable[..., Any]:
        """The recording callback for event *name* (registered by ``__enter__``)."""

        def callback(code: Any, *args: Any) -> Any:
            if not self.wants(code):
                return None
            event = Event(name, code, args)
            self.events.append(event)
            returns = self.returns
            return returns(event) if callable(returns) else returns

        callback.__name__ = "record_" + name
        return callback

    def __enter__(self) -> "Recorder":
        for name in event_names(self.M, self.event_set):
            self.tool.register(event_bit(self.M, name), self.callback(name))
        if self.local:
            for code in self.codes:
                self.tool.set_local(code, self.event_set)
        else:
            self.tool.set_events(self.event_set)
        self.active = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        if self.local:
            for code in self.codes:
                self.tool.set_local(code, 0)
        else:
            self.tool.set_events(0)
        for name in event_names(self.M, self.event_set):
            self.tool.register(event_bit(self.M, name), None)

    def clear(self) -> None:
        self.events.clear()

    # Views --------------------------------------------------------------

    def compact(self, *names: str) -> list[tuple]:
        return [e.compact() for e in self.only(*names)]

    def only(self, *names: str) -> list[Event]:
        """The recorded events with one of *names* (all when none is given)."""
        return [e for e in self.events if not names or e.name in names]

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def lines(self, base: CodeLike) -> list[int]:
        """LINE events as lines relative to *base*, whatever code object reported them.

        For comprehensions, which are separate code objects on 3.11 and inlined
        into the enclosing function from 3.12 on.
        """
        first = code_of(base).co_firstlineno
        return [e.line - first for e in self.events if e.name == "LINE"]


# --------------------------------------------------------------------------
# Small utilities


def drive(coro: Any) -> Any:
    """Run a coroutine that never really suspends, with ``send(None)``; return its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("coroutine suspended")
