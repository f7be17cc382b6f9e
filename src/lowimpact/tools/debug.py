"""The core of ``lowimpact debug``: :class:`pdb.Pdb` with its tracing done by
``sys.monitoring`` events instead of ``sys.settrace``.

pdb's decisions (``stop_here``, ``break_here``, the ``dispatch_*`` and
``user_*`` methods, every command) are the stdlib's own; what changes is
which events reach them.  Two tool ids share the work:

- the breakpoint tool (``DEBUGGER_ID``) sees ``PY_START``/``PY_RESUME`` of
  every code object once, to learn which code objects belong to which file,
  and ``LINE`` only in code objects of files that hold a breakpoint; a line
  that is no breakpoint line answers ``DISABLE``, so after its first pass a
  never-hit breakpoint costs nothing;
- the step tool (another free id) sees the events the current command
  needs, in the code of the frames it can stop in, and nothing once the
  program stops or continues.  It never answers ``DISABLE``: it is switched
  off per code object instead, which leaves no mark behind.

The two never both have ``LINE`` on one code object (the step tool, which
also checks breakpoints, takes a code over while it steps in it), so no line
is dispatched twice.  Since ``DISABLE`` is only undone by
``restart_events()`` (for every tool) or by taking a tool's local events off
a code object and putting them back, code the step tool gives back and the
code objects of a new breakpoint's file are re-armed the second way;
nothing else is restarted (a cleared breakpoint re-arms nothing: the lines
of its file disabled so far hold no breakpoint still).

The callbacks of the hot events are C (``lowimpact._debug``): discovery,
the breakpoint lines' filter and the step tool's events of frames and
threads it cannot stop in are answered there; the rest reach the Python
callbacks below, as their caller's frame.  What C decides by (the lines of
each file that may break, the step command's thread and frames) is pushed
to it by :func:`_breakable_lines` and :meth:`_Core.step_stops`.
"""

from __future__ import annotations

import bdb
import dis
import pdb
import sys
import threading
import types
import warnings
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from lowimpact import _debug
from lowimpact import monitoring as M
from lowimpact._lines import co_lines

E = M.events

#: Events the step tool gets on the code of a frame it may stop at a line of.
_STEP_LINES = (E.LINE | E.JUMP | E.PY_RETURN | E.PY_YIELD | E.STOP_ITERATION
               | E.PY_RESUME)
#: What the breakpoint tool has on the code of a file with breakpoints.
#: JUMP: a loop on one line is a new pass of that line for pdb (a trace
#: function sees it as a line event), not for LINE.
_BREAKPOINT_LINES = E.LINE | E.JUMP
# 3.11 also has conditional jumps backwards (a 'while' on one line): BRANCH.
_BACKWARD_BRANCHES = sys.version_info < (3, 12)
if _BACKWARD_BRANCHES:
    _STEP_LINES |= E.BRANCH
    _BREAKPOINT_LINES |= E.BRANCH
#: Events the step tool gets on the code of a frame it only waits to return.
_STEP_RETURNS = E.PY_RETURN
#: Global events of step mode: frames it has not seen yet.
_STEP_NEW_FRAMES = E.PY_START | E.PY_RESUME | E.PY_THROW
#: Exceptions are no local events: global while any code is stepped in, and
#: the callbacks look only at frames of the code stepped in.
_STEP_EXCEPTIONS = E.RAISE | E.PY_UNWIND
#: Global events while a generator is returned from (its caller's StopIteration).
_STEP_GENERATOR_EXIT = E.RAISE | E.STOP_ITERATION

_GENERATOR = bdb.GENERATOR_AND_COROUTINE_FLAGS
# 3.13's set_trace() stops before the next instruction, not the next line.
_STOP_AT_INSTRUCTION = sys.version_info >= (3, 13)
_STEP_TOOL_IDS = (3, 4, 2, 1)

# A jump from a monitoring callback binds None to the locals it leaves
# unbound and warns (3.12's setter); 3.11's pdb, a trace function, does not
# warn: on the engine its jump says nothing either.
_QUIET_JUMP = sys.version_info < (3, 12)


class _Codes:
    """Code objects by identity, each with a value: equal code objects (the
    same source compiled twice, as a restarted program is) are different
    code to instrument."""

    def __init__(self) -> None:
        self._items: Dict[int, Tuple[types.CodeType, int]] = {}

    def __contains__(self, code: types.CodeType) -> bool:
        return id(code) in self._items

    def __iter__(self) -> Iterator[types.CodeType]:
        return iter([code for code, _ in self._items.values()])

    def __len__(self) -> int:
        return len(self._items)

    def get(self, code: types.CodeType, default: int = 0) -> int:
        item = self._items.get(id(code))
        return default if item is None else item[1]

    def __getitem__(self, code: types.CodeType) -> int:
        return self._items[id(code)][1]

    def __setitem__(self, code: types.CodeType, value: int) -> None:
        self._items[id(code)] = (code, value)

    def add(self, code: types.CodeType) -> None:
        self._items[id(code)] = (code, 0)

    def discard(self, code: types.CodeType) -> None:
        self._items.pop(id(code), None)


class DebuggerBusy(RuntimeError):
    """The monitoring tool ids the debugger needs are taken."""


class _Core:
    """The process's monitoring side of the debugger: its two tool ids, their
    callbacks and what is armed where.  The events go to one debugger at a
    time (:attr:`owner`), as ``sys.settrace`` goes to the last one set."""

    def __init__(self) -> None:
        self.owner: Optional["Pdb"] = None
        self.bp_tool = -1
        self.step_tool = -1
        # The code objects seen running, per canonical file name, are kept
        # by the C side (_debug.files(), _debug.codes()), which learns them.
        #: code objects whose LINE events the breakpoint tool has.
        self.bp_armed = _Codes()
        #: code object -> the step tool's local events on it.
        self.step_armed = _Codes()
        self.step_global = 0
        self.bp_global = 0

    # -- tool ids -------------------------------------------------------

    def acquire(self) -> None:
        if self.bp_tool >= 0:
            return
        holder = M.get_tool(M.DEBUGGER_ID)
        if holder is not None:
            raise DebuggerBusy("sys.monitoring tool id %d (DEBUGGER_ID) is in use by %r"
                               % (M.DEBUGGER_ID, holder))
        step = next((t for t in _STEP_TOOL_IDS if M.get_tool(t) is None), None)
        if step is None:
            raise DebuggerBusy("no free sys.monitoring tool id for stepping (ids %s are in use)"
                               % ", ".join(map(str, _STEP_TOOL_IDS)))
        M.use_tool_id(M.DEBUGGER_ID, "lowimpact debug")
        M.use_tool_id(step, "lowimpact debug (stepping)")
        self.bp_tool, self.step_tool = M.DEBUGGER_ID, step
        st = self.step_tool
        # The events of new frames in step mode: every one may be a stop.
        M.register_callback(st, E.INSTRUCTION, self._step_instruction)
        M.register_callback(st, E.PY_START, self._step_call)
        M.register_callback(st, E.PY_RESUME, self._step_call)
        M.register_callback(st, E.PY_THROW, self._step_call)
        # The hot ones: C callbacks that answer what these Python callbacks
        # would answer without them (src/debug/debug.c), and call them for
        # the rest.
        _debug.install(self.bp_tool, st, M.DISABLE, self._canonic, self._arm_new_code, {
            _event_id(E.PY_START): None, _event_id(E.PY_RESUME): None,
            _event_id(E.LINE): self._bp_line, _event_id(E.JUMP): self._bp_jump,
            _event_id(E.BRANCH): self._bp_branch,
        }, {
            _event_id(E.LINE): self._step_line, _event_id(E.JUMP): self._step_jump,
            _event_id(E.BRANCH): self._step_branch,
            _event_id(E.PY_RETURN): self._step_return, _event_id(E.PY_YIELD): self._step_return,
            _event_id(E.PY_UNWIND): self._step_unwind,
            _event_id(E.RAISE): self._step_exception,
            _event_id(E.STOP_ITERATION): self._step_exception,
        })

    # -- arming ---------------------------------------------------------

    def _set_step(self, code: types.CodeType, events: int) -> None:
        if self.step_armed.get(code, 0) == events:
            return
        if events & E.LINE and code in self.bp_armed:
            M.set_local_events(self.bp_tool, code, 0)
            self.bp_armed.discard(code)
        M.set_local_events(self.step_tool, code, events)
        if events:
            self.step_armed[code] = events
        else:
            self.step_armed.discard(code)

    def _arm_breakpoints(self, code: types.CodeType, rearm: bool) -> None:
        """Give *code*'s lines to the breakpoint tool; *rearm* brings back
        the lines it had disabled."""
        if self.step_armed.get(code, 0) & E.LINE:
            return
        if code in self.bp_armed:
            if not rearm:
                return
            M.set_local_events(self.bp_tool, code, 0)
        M.set_local_events(self.bp_tool, code, _BREAKPOINT_LINES)
        self.bp_armed.add(code)

    def _disarm_breakpoints(self, code: types.CodeType) -> None:
        if code in self.bp_armed:
            M.set_local_events(self.bp_tool, code, 0)
            self.bp_armed.discard(code)

    def step_events(self, wanted: _Codes, new_frames: int) -> None:
        """Make the step tool's events *wanted* (code -> local events) and
        *new_frames* (global); what it leaves goes back to the breakpoints."""
        owner = self.owner
        for code in [c for c in self.step_armed if c not in wanted]:
            had_lines = self.step_armed[code] & E.LINE
            self._set_step(code, 0)
            if had_lines and owner is not None and owner._has_breaks(code):
                self._arm_breakpoints(code, rearm=True)
        for code in wanted:
            events = wanted[code]
            had_lines = self.step_armed.get(code, 0) & E.LINE
            self._set_step(code, events)
            if had_lines and not events & E.LINE and owner is not None and owner._has_breaks(code):
                self._arm_breakpoints(code, rearm=True)
        if new_frames != self.step_global:
            # Last: from here on a call of Python code may be a stop.
            self.step_global = new_frames
            M.set_events(self.step_tool, new_frames)

    def step_add(self, code: types.CodeType, events: int) -> None:
        """Give the step tool *events* on *code* besides what it has."""
        self._set_step(code, self.step_armed.get(code, 0) | events)

    def step_stops(self, thread: Optional[int], stopframe: Optional[types.FrameType],
                   returnframe: Optional[types.FrameType]) -> None:
        """Tell the C callbacks the step command's thread and frames: in
        another thread, or (unless every frame may stop) in another frame at
        a line with no breakpoint, its events are answered in C.  A step in
        a generator may stop in other frames (bdb's StopIteration rules)."""
        any_frame = stopframe is None or bool(stopframe.f_code.co_flags & _GENERATOR)
        _debug.set_step(thread or 0, stopframe, returnframe, any_frame)

    def breakpoints_changed(self, filename: Optional[str], added: bool) -> None:
        """Arm the code objects of *filename* (None: of every file) for the
        owner's breakpoints now, running frames included; *added*: a
        breakpoint was added, whose line may be one they disabled."""
        owner = self.owner
        if owner is None:
            return
        _debug.set_breaks(_breakable_lines(owner.breaks))
        self._learn_running_code()
        files = _debug.files() if filename is None else [filename]
        for name in files:
            has = name in owner.breaks
            for code in _debug.codes(name):
                if has:
                    self._arm_breakpoints(code, rearm=added)
                else:
                    self._disarm_breakpoints(code)
        want = (E.PY_START | E.PY_RESUME) if owner.breaks else 0
        if want != self.bp_global:
            self.bp_global = want
            M.set_events(self.bp_tool, want)

    def _learn_running_code(self) -> None:
        """Remember the code of every frame on every thread's stack: they
        may have started before the debugger saw them."""
        for frame in sys._current_frames().values():
            while frame is not None:
                _debug.learn(frame.f_code)
                frame = frame.f_back

    def release(self) -> None:
        """Take every event off (the tool ids are kept for the next session)."""
        if self.bp_tool < 0:
            return
        self.step_events(_Codes(), 0)
        for code in list(self.bp_armed):
            self._disarm_breakpoints(code)
        if self.bp_global:
            self.bp_global = 0
            M.set_events(self.bp_tool, 0)

    # -- callbacks ------------------------------------------------------

    # PY_START and PY_RESUME of the breakpoint tool are C's alone: it asks
    # these two for a file name it has not seen and for a code object of a
    # file with breakpoints.

    def _canonic(self, filename: str) -> str:
        # C keeps the answer: the same as bdb's, owner or not.
        return (self.owner or _NO_OWNER).canonic(filename)

    def _arm_new_code(self, code: types.CodeType) -> None:
        self._arm_breakpoints(code, rearm=False)

    def _bp_line(self, code: types.CodeType, line: int) -> Any:
        owner = self.owner
        if owner is None or not owner._may_break(code, line):
            return M.DISABLE
        owner._event(sys._getframe(1), "line", None, breakpoint_only=True)
        return None

    def _bp_jump(self, code: types.CodeType, source: int, destination: int) -> Any:
        return self._bp_loop(sys._getframe(1), code, source, destination)

    def _bp_branch(self, code: types.CodeType, source: int, destination: int) -> Any:
        if destination > source and _can_branch_backward(code, source):
            return None  # taken, it would be a new pass of a loop
        return self._bp_loop(sys._getframe(1), code, source, destination)

    def _bp_loop(self, frame: types.FrameType, code: types.CodeType, source: int,
                 destination: int) -> Any:
        line = _same_line_loop(code, source, destination)
        owner = self.owner
        if line is None or owner is None or not owner._may_break(code, line):
            return M.DISABLE
        owner._event(frame, "line", None, breakpoint_only=True)
        return None

    def _step_jump(self, code: types.CodeType, source: int, destination: int) -> Any:
        return self._step_loop(sys._getframe(1), code, source, destination)

    def _step_branch(self, code: types.CodeType, source: int, destination: int) -> Any:
        if destination > source and _can_branch_backward(code, source):
            return None
        return self._step_loop(sys._getframe(1), code, source, destination)

    def _step_loop(self, frame: types.FrameType, code: types.CodeType, source: int,
                   destination: int) -> Any:
        if _same_line_loop(code, source, destination) is None:
            # Where a jump goes does not change: no mark to take back later.
            return M.DISABLE
        owner = self.owner
        if owner is not None and owner._thread == threading.get_ident():
            owner._event(frame, "line", None)
        return None

    def _step_line(self, code: types.CodeType, line: int) -> Any:
        owner = self.owner
        if owner is not None and owner._thread == threading.get_ident():
            owner._event(sys._getframe(1), "line", None)

    def _step_instruction(self, code: types.CodeType, offset: int) -> Any:
        owner = self.owner
        if owner is not None and owner._thread == threading.get_ident():
            owner._event(sys._getframe(1), "opcode", None)

    def _step_call(self, code: types.CodeType, offset: int, exc: Any = None) -> Any:
        owner = self.owner
        if owner is not None and owner._thread == threading.get_ident():
            owner._event(sys._getframe(1), "call", None)

    def _step_return(self, code: types.CodeType, offset: int, value: Any) -> Any:
        owner = self.owner
        if owner is not None and owner._thread == threading.get_ident():
            owner._event(sys._getframe(1), "return", value)

    def _step_unwind(self, code: types.CodeType, offset: int, exc: BaseException) -> Any:
        owner = self.owner
        if (owner is not None and owner._thread == threading.get_ident()
                and code in self.step_armed):
            owner._event(sys._getframe(1), "return", None)

    def _step_exception(self, code: types.CodeType, offset: int, exc: BaseException) -> Any:
        owner = self.owner
        if (owner is not None and owner._thread == threading.get_ident()
                and (self.step_armed.get(code, 0) & E.LINE
                     or (owner._generator_exit() and owner._has_breaks(code)))):
            owner._event(sys._getframe(1), "exception", (type(exc), exc, exc.__traceback__))


def _event_id(event: int) -> int:
    """The id of *event* (one bit of an event set), as C callbacks have it."""
    return event.bit_length() - 1


def _breakable_lines(breaks: Dict[str, Any]) -> Dict[str, Tuple[list, list]]:
    """What the C side tests of pdb's ``_may_break``: per canonical file
    name, the lines with a breakpoint and those of one set by function name."""
    bplist = bdb.Breakpoint.bplist
    return {name: (list(lines), [line for line in lines
                                 if any(bp.funcname for bp in bplist.get((name, line), ()))])
            for name, lines in breaks.items() if lines}


def _line_at(code: types.CodeType, offset: int) -> Optional[int]:
    for start, end, line in co_lines(code):
        if start <= offset < end:
            return line
    return None


def _can_branch_backward(code: types.CodeType, offset: int) -> bool:
    return "BACKWARD" in dis.opname[code.co_code[offset]]


def _same_line_loop(code: types.CodeType, source: int, destination: int) -> Optional[int]:
    """The line of a backward jump that stays on its line (a loop on one
    line, which pdb sees pass by pass), or None."""
    if destination > source:
        return None
    line = _line_at(code, destination)
    if line is None or line != _line_at(code, source):
        return None
    return line


#: bdb's canonic() while no debugger owns the core.
_NO_OWNER = bdb.Bdb()
_core = _Core()
# One stop at a time: a thread that hits a breakpoint while another is
# stopped waits for it to go on.
_stop_lock = threading.RLock()


class Pdb(pdb.Pdb):
    """:class:`pdb.Pdb` on ``sys.monitoring``: the same commands and output;
    breakpoints cost nothing until they are hit, in every thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._thread: Optional[int] = None
        self._active = False
        self._dirty = False
        self._stop_opcode = False
        super().__init__(*args, **kwargs)

    # -- where the events come in ---------------------------------------

    def _event(self, frame: types.FrameType, event: str, arg: Any,
               breakpoint_only: bool = False) -> None:
        """Dispatch one event as ``trace_dispatch`` would, then give the
        step tool what the command given at a stop needs."""
        if self.quitting or not self._active:
            return
        with _stop_lock:
            if self.quitting or not self._active:
                return
            if breakpoint_only and self._thread != threading.get_ident():
                # Another thread: it stops at breakpoints only, and becomes
                # the one the next command steps in.
                if not self.break_here(frame):
                    return
                self._thread = threading.get_ident()
                self._set_stopinfo(self.botframe, None, -1)
                self.user_line(frame)
            else:
                self.enterframe = frame
                self._dirty = False
                if event == "line":
                    self.dispatch_line(frame)
                elif event == "opcode":
                    self.dispatch_opcode(frame, None)
                elif event == "call":
                    traced = self.dispatch_call(frame, None)
                    if traced is not None and not self._dirty and self.stop_here(frame):
                        # A frame step mode goes on in: its lines and returns.
                        _core.step_add(frame.f_code, _STEP_LINES)
                elif event == "return":
                    self.dispatch_return(frame, arg)
                else:
                    self.dispatch_exception(frame, arg)
            if self._dirty:
                self._dirty = False
                self._rearm(frame)

    def _rearm(self, frame: Optional[types.FrameType]) -> None:
        """Give the step tool the events that can stop the program under the
        current stop information, seen from *frame* (the thread's newest
        frame the debugger cares about); nothing else."""
        if self.quitting or not self._active:
            self._deactivate()
            return
        wanted = _Codes()
        new_frames = 0
        stopframe = self.stopframe
        if stopframe is None:
            # Step: any frame may be the next stop.
            f = frame
            while f is not None:
                wanted[f.f_code] = wanted.get(f.f_code, 0) | _STEP_LINES
                if f is self.botframe:
                    break
                f = f.f_back
            new_frames = _STEP_NEW_FRAMES
            if self._stop_opcode and frame is not None:
                wanted[frame.f_code] |= E.INSTRUCTION
        else:
            if self.stoplineno != -1:
                wanted[stopframe.f_code] = _STEP_LINES
            if self.returnframe is not None:
                code = self.returnframe.f_code
                wanted[code] = wanted.get(code, 0) | _STEP_RETURNS
            if stopframe.f_code.co_flags & _GENERATOR:
                wanted[stopframe.f_code] = wanted.get(stopframe.f_code, 0) | _STEP_LINES
                new_frames = _STEP_GENERATOR_EXIT
            if stopframe is self.botframe and self.stoplineno == -1 and not self.breaks:
                # continue with no breakpoint: as pdb, stop debugging.
                self._deactivate()
                return
        if wanted:
            new_frames |= _STEP_EXCEPTIONS
        _core.step_stops(self._thread, stopframe, self.returnframe)
        _core.step_events(wanted, new_frames)

    def _generator_exit(self) -> bool:
        """Whether bdb stops at StopIteration in any frame it traces (a
        'return' or 'next' out of a generator); pdb traces the frames of
        files with breakpoints."""
        stopframe = self.stopframe
        return stopframe is not None and bool(stopframe.f_code.co_flags & _GENERATOR)

    def _activate(self) -> None:
        _core.acquire()
        if _core.owner is not self:
            _core.release()
            _core.owner = self
        self._active = True
        self._thread = threading.get_ident()
        _core.breakpoints_changed(None, added=True)

    def _deactivate(self) -> None:
        self._active = False
        if _core.owner is self:
            _core.release()

    def _has_breaks(self, code: types.CodeType) -> bool:
        return self.canonic(code.co_filename) in self.breaks

    def _may_break(self, code: types.CodeType, line: int) -> bool:
        """Whether *line* of *code* can be a breakpoint's (break_here's first
        test): a breakpoint's line, or any line of a function with a
        breakpoint set by its name."""
        lines = self.breaks.get(self.canonic(code.co_filename))
        if not lines:
            return False
        if line in lines:
            return True
        first = code.co_firstlineno
        if first not in lines:
            return False
        return any(bp.funcname for bp in bdb.Breakpoint.bplist.get(
            (self.canonic(code.co_filename), first), ()))

    # -- bdb's tracing machinery, on monitoring -------------------------

    def _set_stopinfo(self, stopframe: Optional[types.FrameType],
                      returnframe: Optional[types.FrameType], stoplineno: int = 0,
                      opcode: bool = False) -> None:
        self.stopframe = stopframe
        self.returnframe = returnframe
        self.quitting = False
        self.stoplineno = stoplineno
        self._stop_opcode = opcode
        self._dirty = True

    def set_step(self) -> None:
        # pdb re-traces the caller of a returning frame here (#13183); the
        # step tool arms every frame of the stack, the caller included.
        self._set_stopinfo(None, None)

    def set_continue(self) -> None:
        self._set_stopinfo(self.botframe, None, -1)

    def set_quit(self) -> None:
        self.stopframe = self.botframe
        self.returnframe = None
        self.quitting = True
        self._dirty = True

    def set_trace(self, frame: Optional[types.FrameType] = None) -> None:
        """Start debugging from *frame* (default: the caller's)."""
        if frame is None:
            frame = sys._getframe().f_back
        self.reset()
        self.enterframe = frame
        bottom = frame
        while bottom is not None and bottom.f_back is not None:
            bottom = bottom.f_back
        self.botframe = bottom
        self._set_stopinfo(None, None, opcode=_STOP_AT_INSTRUCTION)
        self._activate()
        self._dirty = False
        self._rearm(frame)

    def _begin(self) -> None:
        self.reset()
        self._activate()
        self._dirty = False
        self._rearm(None)

    def _end(self) -> None:
        self.quitting = True
        self._deactivate()

    # The program runs right inside these (as in bdb): the frame that runs it
    # is the debugger's bottom frame, shown by 'where'.

    def run(self, cmd: Any, globals: Optional[dict] = None, locals: Optional[dict] = None) -> None:
        """Debug the statement *cmd* (a string or code object), as exec()."""
        if globals is None:
            import __main__

            globals = __main__.__dict__
        if locals is None:
            locals = globals
        if isinstance(cmd, str):
            cmd = compile(cmd, "<string>", "exec")
        self._begin()
        try:
            exec(cmd, globals, locals)
        except bdb.BdbQuit:
            pass
        finally:
            self._end()

    def runeval(self, expr: Any, globals: Optional[dict] = None,
                locals: Optional[dict] = None) -> Any:
        """Debug the expression *expr*, as eval()."""
        if globals is None:
            import __main__

            globals = __main__.__dict__
        if locals is None:
            locals = globals
        self._begin()
        try:
            return eval(expr, globals, locals)
        except bdb.BdbQuit:
            return None
        finally:
            self._end()

    def runcall(self, func: Callable[..., Any], /, *args: Any, **kwds: Any) -> Any:
        """Debug the call ``func(*args, **kwds)``."""
        self._begin()
        try:
            return func(*args, **kwds)
        except bdb.BdbQuit:
            return None
        finally:
            self._end()

    def do_jump(self, arg: str) -> None:
        if not _QUIET_JUMP:
            super().do_jump(arg)
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"assigning None to \d+ unbound local",
                                    RuntimeWarning)
            super().do_jump(arg)

    do_j = do_jump

    def do_debug(self, arg: str) -> Optional[bool]:
        # pdb's recursive debugger puts sys.settrace(trace_dispatch) back
        # when it ends: this debugger has no trace function to put back.
        try:
            return super().do_debug(arg)
        finally:
            sys.settrace(None)

    # -- breakpoints: re-arm their files --------------------------------

    def set_break(self, filename: str, lineno: int, temporary: bool = False,
                  cond: Optional[str] = None, funcname: Optional[str] = None) -> Optional[str]:
        error = super().set_break(filename, lineno, temporary, cond, funcname)
        self._breaks_changed(filename, added=True)
        return error

    def clear_break(self, filename: str, lineno: int) -> Optional[str]:
        error = super().clear_break(filename, lineno)
        self._breaks_changed(filename, added=False)
        return error

    def clear_bpbynumber(self, arg: Any) -> Optional[str]:
        error = super().clear_bpbynumber(arg)
        self._breaks_changed(None, added=False)
        return error

    def clear_all_file_breaks(self, filename: str) -> Optional[str]:
        error = super().clear_all_file_breaks(filename)
        self._breaks_changed(filename, added=False)
        return error

    def clear_all_breaks(self) -> Optional[str]:
        error = super().clear_all_breaks()
        self._breaks_changed(None, added=False)
        return error

    def _breaks_changed(self, filename: Optional[str], added: bool) -> None:
        if self._active and _core.owner is self:
            _core.breakpoints_changed(None if filename is None else self.canonic(filename), added)


