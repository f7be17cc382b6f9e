"""Runs the tests of CPython 3.12's test_monitoring.py that fail on 3.10 with
their assertions about 3.12's bytecode replaced by 3.10's own account of it.

Run in a fresh process by test_cpython_monitoring.py (3.10 only); prints a
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

    def trace(frame, event, arg):
        if frame.f_code is not code:
            return None
        frame.f_trace_opcodes = True
        return local

    sys.settrace(trace)
    try:
        func()
    finally:
        sys.settrace(None)
    return events


def main() -> int:
    runner.prepare_monitoring()
    runner.load_tests(runner.find_test_file())
    module = sys.modules[runner.MODULE_NAME]

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

    suite = unittest.TestSuite(
        unittest.defaultTestLoader.loadTestsFromTestCase(getattr(module, name))
        for name in ("MonitoringEventsTest", "TestLineAndInstructionEvents",
                     "TestInstallIncrementally", "TestLoadSuperAttr"))
    result = runner.RecordingResult(open(os.devnull, "w"), False, 0)
    suite.run(result)
    outcomes = {name: entry.get("message", entry["outcome"])
                for name, entry in result.outcomes.items()}
    print(json.dumps(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
