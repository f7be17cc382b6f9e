"""Runs the tests of CPython 3.12's test_monitoring.py that fail on 3.10 (and
3.9) with their assertions about 3.12's bytecode replaced by that version's
own account of it.

Run in a fresh process by test_cpython_monitoring.py (3.9 and 3.10); prints a
JSON object {short test id: "pass" or the failure}:

* MonitoringEventsTest: the events 3.12 lists, then the JUMP of gather_events'
  own frame over its inline `except:` handler (3.10 compiles a
  JUMP_FORWARD there, checked);
* TestLineAndInstructionEvents: the events the engine delivers for each
  function must equal what ``sys.settrace`` with ``f_trace_opcodes``
  reports for it on 3.10 (lines relative to the function, 'opcode' as
  INSTRUCTION at ``f_lasti``); get_events' own lines as in the file;
* TestInstallIncrementally: the offsets 3.12 gives `len(())`'s LOAD_GLOBAL,
  CALL and POP_TOP are replaced by 3.10's (LOAD_GLOBAL, CALL_FUNCTION,
  POP_TOP);
* TestLoadSuperAttr: the check that the compiler emitted LOAD_SUPER_ATTR
  (3.12's) is answered as 3.12 would: yes unless `super` is assigned.

On 3.9 also (patch_for_39): the lines, branches and jumps of the program in
TestLoadSuperAttr and TestBranchAndJumpEvents, and LineMonitoringTest's
test_lines_loop, are those 3.12's rules give for 3.9's code (flow_events);
co_lines() comes from lowimpact._lines.
"""

from __future__ import annotations

import dis
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import cpython_test_monitoring as runner  # noqa: E402


def settrace_events(func):
    """('line', name, relative line) and ('instruction', name, offset) of
    one call of func, from 3.10's own tracing."""
    code = func.__code__
    events = []

    def local(frame, event, arg):
        if event == "line":
            events.append(("line", code.co_name, frame.f_lineno - code.co_firstlineno))
        elif event == "opcode":
            events.append(("instruction", code.co_name, frame.f_lasti))
        return local

    run_traced(func, {code}, local)
    return events


def run_traced(func, codes, local, lines=True):
    """Call func with *local* as the trace function of the frames of
    *codes*, with 'opcode' events, and 'line' events if *lines*."""
    def trace(frame, event, arg):
        if frame.f_code not in codes:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = lines
        return local

    sys.settrace(trace)
    try:
        func()
    finally:
        sys.settrace(None)


_JUMPS = {"JUMP_FORWARD", "JUMP_ABSOLUTE"}
_BRANCHES = {"FOR_ITER", "JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP", "POP_JUMP_IF_FALSE",
             "POP_JUMP_IF_TRUE", "JUMP_IF_NOT_EXC_MATCH"}


def flow_events(func, codes, kinds=("line",)):
    """The *kinds* of ('line', name, relative line), ('branch' or 'jump',
    name, from line, to line) of one call of func in the code objects
    *codes*, by 3.12's rules applied to this interpreter's code: an
    instruction that starts a line (its line differs from the one before it
    in the code, or it is a jump target: of a backward jump or a block's
    handler only, as 3.9 reports lines, since its compiler gives the code
    it adds after a body the line of the last statement compiled) reports
    its line when the frame's previous instruction was on another line or
    was none; a conditional jump
    instruction that runs is a 'branch', an unconditional one a 'jump', from
    it to the next instruction run.  The instructions run come from
    ``sys.settrace`` with ``f_trace_opcodes`` (3.9's own 'line' events say
    less: none where a forward jump lands inside a line)."""
    from lowimpact._lines import co_lines

    def line_of(code, offset):
        return next(line for start, end, line in co_lines(code) if start <= offset < end)

    starts = {}
    targets = {}
    handlers = set()
    opnames = {}
    for code in codes:
        previous = None
        starts[code] = set()
        targets[code] = set()
        for instruction in dis.get_instructions(code):
            line = line_of(code, instruction.offset)
            if line != previous:
                starts[code].add(instruction.offset)
            if instruction.is_jump_target:
                targets[code].add(instruction.offset)
            if instruction.opname in ("SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH"):
                handlers.add((code, instruction.argval))
            previous = line
            opnames[code, instruction.offset] = instruction.opname
    events = []
    last = {}

    def local(frame, event, arg):
        if event == "opcode":
            code = frame.f_code
            line = line_of(code, frame.f_lasti)
            before = last.get(frame)
            if before is not None:
                kind = ("jump" if opnames[code, before] in _JUMPS else
                        "branch" if opnames[code, before] in _BRANCHES else None)
                if kind in kinds:
                    events.append((kind, code.co_name, line_of(code, before) - code.co_firstlineno,
                                   line - code.co_firstlineno))
            lands = frame.f_lasti in targets[code] and before is not None and \
                (frame.f_lasti <= before or (code, frame.f_lasti) in handlers)
            if "line" in kinds and (frame.f_lasti in starts[code] or lands) and \
                    (before is None or line_of(code, before) != line):
                events.append(("line", code.co_name, line - code.co_firstlineno))
            last[frame] = frame.f_lasti
        return local

    run_traced(func, starts, local, lines=False)
    return events


def code_objects(code):
    """code and the code objects nested in it."""
    found = [code]
    for const in code.co_consts:
        if isinstance(const, type(code)):
            found.extend(code_objects(const))
    return found


def patch_for_39(module) -> None:
    """What 3.9's compiler does unlike 3.10's (no PEP 626): a function's
    implicit ``return None`` stays on the line before it, and the lines of
    a multi-line expression are its first line's; code objects have no
    co_lines() (lowimpact._lines has it)."""
    from lowimpact._lines import co_lines

    def line_from_offset(code, offset):
        for start, end, line in co_lines(code):
            if start <= offset < end:
                return line - code.co_firstlineno
        return -1

    module.line_from_offset = line_from_offset

    def test_lines_loop(self):
        # floop's LINE events, as the file's test gathers them, against the
        # rule applied to floop's 3.9 code (the loop's exit jumps to the
        # implicit return, on the `pass` line).
        events = []
        recorder = module.RecorderWithDisable(events)
        sys.monitoring.register_callback(module.TEST_TOOL, module.E.LINE, recorder)
        sys.monitoring.set_events(module.TEST_TOOL, module.E.LINE)
        try:
            module.floop()
        finally:
            sys.monitoring.set_events(module.TEST_TOOL, 0)
            sys.monitoring.register_callback(module.TEST_TOOL, module.E.LINE, None)
            sys.monitoring.restart_events()
        code = module.floop.__code__
        lines = range(code.co_firstlineno, max(line for _, _, line in co_lines(code)) + 1)
        expected = [code.co_firstlineno + line for _, _, line in flow_events(module.floop, [code])]
        self.assertEqual([line for line in events if line in lines], expected)

    module.LineMonitoringTest.test_lines_loop = test_lines_loop

    def check_flow_events(self, func, expected, tool=module.TEST_TOOL,
                          recorders=(module.ExceptionRecorder,)):
        # The other events as the file lists them; the program's lines,
        # branches and jumps by the rules applied to its 3.9 code.
        events = self.get_events(func, tool, recorders)
        program = code_objects(func.__code__)
        if func.__globals__ is not vars(module):
            # TestLoadSuperAttr's program, exec'd on its own: its classes' methods.
            program += [c for v in func.__globals__.values() if isinstance(v, type)
                        for f in vars(v).values() if hasattr(f, "__code__")
                        for c in code_objects(f.__code__)]
        names = {c.co_name for c in program}
        kinds = tuple(kind for kind, recorder in (("line", module.LineRecorder),
                                                  ("jump", module.JumpRecorder),
                                                  ("branch", module.BranchRecorder))
                      if recorder in recorders)

        def others(listed):
            return [e for e in listed if e[0] not in kinds or e[1] not in names]

        self.assertEqual(others(events), others(expected))
        self.assertEqual([e for e in events if e[0] in kinds and e[1] in names],
                         flow_events(func, program, kinds))

    module.TestLoadSuperAttr.check_events = check_flow_events
    module.TestBranchAndJumpEvents.check_events = check_flow_events


def main() -> int:
    runner.prepare_monitoring()
    runner.load_tests(runner.find_test_file())
    module = sys.modules[runner.MODULE_NAME]
    if sys.version_info < (3, 10):
        patch_for_39(module)

    def check_events(self, func, expected, tool=module.TEST_TOOL,
                     recorders=(module.ExceptionRecorder,)):
        name = func.__code__.co_name
        events = self.get_events(func, tool, recorders)
        self.assertEqual([e for e in events if e[1] != name],
                         [e for e in expected if e[1] != name])
        self.assertEqual([e for e in events if e[1] == name], settrace_events(func))

    module.TestLineAndInstructionEvents.check_events = check_events

    # gather_events runs as its events come on, so its frame reports the
    # jump it makes after `func()` returns: 3.10 compiles a JUMP_FORWARD
    # over the inline `except:` handler there (3.12 falls through).
    gather = [i.opname for i in dis.get_instructions(module.MonitoringEventsBase.gather_events)]
    jumps_over_handler = "POP_BLOCK" in gather and \
        gather[gather.index("POP_BLOCK") + 1] == "JUMP_FORWARD"

    def check_simple_events(self, func, expected=None):
        events = self.gather_events(func)
        expected = list(func.events if expected is None else expected)
        self.assertTrue(jumps_over_handler)
        # 3.9 compiles one return per function: a handler jumps to it.
        ops = [i.opname for i in dis.get_instructions(func)]
        if "POP_EXCEPT" in ops and ops[ops.index("POP_EXCEPT") + 1] == "JUMP_FORWARD":
            expected.insert(len(expected) - expected[::-1].index("return") - 1, "jump")
        self.assertEqual(events, expected + ["jump"])

    module.MonitoringEventsTest.check_events = check_simple_events

    func2 = module.TestInstallIncrementally.func2
    offsets = {i.opname: i.offset for i in dis.get_instructions(func2)}
    by_312 = {2: offsets["LOAD_GLOBAL"], 12: offsets["CALL_FUNCTION"], 14: offsets["POP_TOP"]}
    module.TestInstallIncrementally.MUST_INCLUDE_CI = [
        event[:2] + (by_312[event[2]],) if event[0] == "instruction" else event
        for event in module.TestInstallIncrementally.MUST_INCLUDE_CI]

    def has_load_super_attr(self, co):
        return not any(i.opname == "STORE_NAME" and i.argval == "super"
                       for i in dis.get_instructions(co))

    module.TestLoadSuperAttr._has_load_super_attr = has_load_super_attr

    classes = ["MonitoringEventsTest", "TestLineAndInstructionEvents", "TestInstallIncrementally",
               "TestLoadSuperAttr"]
    if sys.version_info < (3, 10):
        classes += ["LineMonitoringTest", "TestBranchAndJumpEvents"]
    suite = unittest.TestSuite(
        unittest.defaultTestLoader.loadTestsFromTestCase(getattr(module, name))
        for name in classes)
    result = runner.RecordingResult(open(os.devnull, "w"), False, 0)
    suite.run(result)
    outcomes = {name: entry.get("message", entry["outcome"])
                for name, entry in result.outcomes.items()}
    print(json.dumps(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
