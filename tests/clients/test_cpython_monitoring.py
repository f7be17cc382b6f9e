"""CPython 3.12's own ``Lib/test/test_monitoring.py``, run unmodified.

``tools/cpython_test_monitoring.py`` runs the file from a CPython 3.12
installation in a fresh process of this interpreter: on 3.10 and 3.11
against lowimpact's engine, on 3.12+ against the native ``sys.monitoring``
(the baseline).  This test asserts that the tests that fail are exactly the
known ones below, so that a fix shows up as "unexpectedly passed" and a
regression as a new failure.

The file hard-codes what CPython 3.12's compiler produces (instruction
offsets, opcode names, line numbers of generated code), so most known
failures on 3.10 and 3.11 are the test's, not the engine's: they compile the
same source to other bytecode.  Each was checked: the engine's events equal
what that version's own ``sys.settrace`` opcode tracing reports for its
bytecode, or the test passes once the bytecode-specific assertion is taken
out; on 3.10 test_known_failures_pass_on_310_bytecode does that check
(cpython_monitoring_310.py).

On 3.10 and 3.11 the runner takes ``test.profilee`` from the interpreter's
own ``test`` package (3.12's calls ``sys.exception()``, which they lack).  On
3.10 it takes out the one test that is not 3.10 syntax (LEFT_OUT below).

The file is found at ``$LOWIMPACT_CPYTHON_TESTS`` (the file, or a directory
holding it) or under ``$(pyenv root)/versions/3.12.*``; without it this test
fails and says so.  ``python tools/cpython_test_monitoring.py -v`` shows the
results with tracebacks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import ModuleType
from typing import Dict, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "tools", "cpython_test_monitoring.py")

#: The test file the lists below were made for (CPython 3.12.1's).  Another
#: version of it may have other tests; a mismatch is mentioned on failure.
KNOWN_SHA256 = "dc6a29b450355df01ecd9ddf605baac2cf0f135abb99dac5b201c46620678977"

_EVENTS_JUMP = ("3.11 bytecode: gather_events' `try: func() except: pass` has a JUMP_FORWARD "
                "over the inline handler (3.12 places handlers after the function body and "
                "falls through), so the list ends with one extra 'jump'")
_EVENTS_JUMP_310 = ("3.10 bytecode, as 3.11's: gather_events' `try: func() except: pass` has a "
                    "JUMP_FORWARD over the inline handler, which the frame, running as the "
                    "events come (a reached frame, running.c), reports at the end")
_RETURN_CONST = ("3.11 bytecode: `return None` is LOAD_CONST + RETURN_VALUE (3.12: one "
                 "RETURN_CONST), so one more INSTRUCTION at the end")
_NO_LOAD_SUPER_ATTR = ("3.10 and 3.11 have no LOAD_SUPER_ATTR opcode (new in 3.12) and the test "
                       "asserts the compiler emits it; with that assertion bypassed, every event "
                       "matches")
_OFFSETS_CALL = ("3.11 bytecode: LOAD_GLOBAL has 5 cache units (3.12: 4) and a PRECALL "
                 "(+1 cache) precedes CALL, so `len(())` has no instruction at offset 12")

_NO_RESUME = ("3.10 bytecode: no RESUME at offset 0 (3.11+), so every offset is 2 less and "
              "the first instruction is on the first body line; `return None` is LOAD_CONST + "
              "RETURN_VALUE (3.12: one RETURN_CONST), so one more INSTRUCTION at the end")
_OFFSETS_CALL_310 = ("3.10 bytecode: `len(())` is LOAD_GLOBAL 0, LOAD_CONST 2, CALL_FUNCTION 4, "
                     "POP_TOP 6 (3.12: RESUME first, LOAD_GLOBAL's caches, CALL at 12, POP_TOP "
                     "at 14), so there is no instruction at offset 12 or 14")

_AS_310 = " (3.9's as 3.10's)"
_EVENTS_JUMP_39 = ("3.9 bytecode: gather_events' `try: func() except: pass` has a JUMP_FORWARD "
                   "over the inline handler, as on 3.10, reported at the end")
_LINES_39 = ("3.9 bytecode (no PEP 626): the lines of a multi-line expression are its first "
             "line's, so `super(\n).x` gives no LINE for its second line, and a function's "
             "implicit `return None` stays on the line before it (a handler's jump to it is a "
             "LINE there); no LOAD_SUPER_ATTR either")

#: By (major, minor): the known failures that are errors, with their
#: exception, not assertion failures.
KNOWN_ERRORS: Dict[Tuple[int, int], Dict[str, str]] = {
    (3, 9): {"TestBranchAndJumpEvents.test_loop": "AttributeError"},
}

#: By (major, minor): the tests that version cannot compile, which the
#: runner takes out.
LEFT_OUT: Dict[Tuple[int, int], list] = {
    (3, 9): ["TestBranchAndJumpEvents.test_except_star"],
    (3, 10): ["TestBranchAndJumpEvents.test_except_star"],
}

#: By (major, minor): short test id -> why it fails there.
KNOWN_FAILURES: Dict[Tuple[int, int], Dict[str, str]] = {
    (3, 9): {
        "MonitoringEventsTest.test_caught": _EVENTS_JUMP_39 + "; caught()'s handler ends with a "
        "JUMP_FORWARD to the function's one `return None` (3.10 copies the return into the "
        "handler), one more 'jump' before its 'return'",
        "MonitoringEventsTest.test_just_call": _EVENTS_JUMP_39,
        "MonitoringEventsTest.test_just_pass": _EVENTS_JUMP_39,
        "MonitoringEventsTest.test_nested_call": _EVENTS_JUMP_39,
        "TestBranchAndJumpEvents.test_loop": (
            "3.9 code objects have no co_lines() (PEP 626, 3.10), which the test's "
            "line_from_offset calls; given one, the loop's exit branch goes to the implicit "
            "`return None` on the last body line (3.12: END_FOR, on the `for` line)"),
        "TestInstallIncrementally.test_call_then_instruction": _OFFSETS_CALL_310 + _AS_310,
        "TestInstallIncrementally.test_instruction_then_call": _OFFSETS_CALL_310 + _AS_310,
        "TestLineAndInstructionEvents.test_simple": _NO_RESUME + _AS_310,
        "TestLineAndInstructionEvents.test_with_restart": _NO_RESUME + _AS_310,
        "TestLineAndInstructionEvents.test_c_call": (
            "3.9 bytecode, as 3.10's: no RESUME; `[].append(2)` is BUILD_LIST, LOAD_METHOD, "
            "LOAD_CONST, CALL_METHOD, POP_TOP with no inline caches; LOAD_CONST + RETURN_VALUE"),
        "TestLineAndInstructionEvents.test_try_except": (
            "3.9 bytecode: no RESUME; SETUP_FINALLY and POP_BLOCK, the handler inline, ending "
            "with a JUMP_FORWARD to the function's one `return None`"),
        "TestLoadSuperAttr.test_attr": _LINES_39,
        "TestLoadSuperAttr.test_method_call": _LINES_39,
        "TestLoadSuperAttr.test_method_call_error": _LINES_39,
        "TestLoadSuperAttr.test_vs_other_type_call (call_method=False)": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_vs_other_type_call (call_method=True)": _NO_LOAD_SUPER_ATTR,
    },
    (3, 10): {
        "MonitoringEventsTest.test_caught": _EVENTS_JUMP_310,
        "MonitoringEventsTest.test_just_call": _EVENTS_JUMP_310,
        "MonitoringEventsTest.test_just_pass": _EVENTS_JUMP_310,
        "MonitoringEventsTest.test_nested_call": _EVENTS_JUMP_310,
        "TestInstallIncrementally.test_call_then_instruction": _OFFSETS_CALL_310,
        "TestInstallIncrementally.test_instruction_then_call": _OFFSETS_CALL_310,
        "TestLineAndInstructionEvents.test_simple": _NO_RESUME,
        "TestLineAndInstructionEvents.test_with_restart": _NO_RESUME,
        "TestLineAndInstructionEvents.test_c_call": (
            "3.10 bytecode: no RESUME; `[].append(2)` is BUILD_LIST, LOAD_METHOD, LOAD_CONST, "
            "CALL_METHOD, POP_TOP with no inline caches (3.12: LOAD_ATTR's 9 caches, CALL at "
            "28); LOAD_CONST + RETURN_VALUE"),
        "TestLineAndInstructionEvents.test_try_except": (
            "3.10 bytecode: no RESUME; SETUP_FINALLY and POP_BLOCK (3.11+ have an exception "
            "table), the handler inline, whose `except:` line has POP_TOP x3 (3.12: PUSH_EXC_INFO "
            "at the end of the function); LOAD_CONST + RETURN_VALUE"),
        "TestLoadSuperAttr.test_attr": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_method_call": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_method_call_error": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_vs_other_type_call (call_method=False)": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_vs_other_type_call (call_method=True)": _NO_LOAD_SUPER_ATTR,
    },
    (3, 11): {
        "MonitoringEventsTest.test_caught": _EVENTS_JUMP,
        "MonitoringEventsTest.test_just_call": _EVENTS_JUMP,
        "MonitoringEventsTest.test_just_pass": _EVENTS_JUMP,
        "MonitoringEventsTest.test_nested_call": _EVENTS_JUMP,
        "TestBranchAndJumpEvents.test_except_star": (
            "3.11 bytecode: except* compiles to other instructions (PREP_RERAISE_STAR, "
            "3.12: CALL_INTRINSIC_2), so the branches have other offsets"),
        "TestInstallIncrementally.test_call_then_instruction": _OFFSETS_CALL,
        "TestInstallIncrementally.test_instruction_then_call": _OFFSETS_CALL,
        "TestLineAndInstructionEvents.test_simple": _RETURN_CONST,
        "TestLineAndInstructionEvents.test_with_restart": _RETURN_CONST,
        "TestLineAndInstructionEvents.test_c_call": (
            "3.11 bytecode: `[].append(2)` is LOAD_METHOD (10 caches) + PRECALL + CALL where "
            "3.12 has LOAD_ATTR (9 caches) + CALL; LOAD_CONST + RETURN_VALUE"),
        "TestLineAndInstructionEvents.test_try_except": (
            "3.11 bytecode: LOAD_GLOBAL's 5 caches, a JUMP_FORWARD over the inline cleanup "
            "handler (3.12 places it at the end), LOAD_CONST + RETURN_VALUE"),
        "TestLoadSuperAttr.test_attr": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_method_call": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_method_call_error": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_vs_other_type_call (call_method=False)": _NO_LOAD_SUPER_ATTR,
        "TestLoadSuperAttr.test_vs_other_type_call (call_method=True)": _NO_LOAD_SUPER_ATTR,
    },
    (3, 12): {},
    (3, 13): {
        "TestBranchAndJumpEvents.test_except_star": (
            "3.13 compiles except* differently from 3.12 (one JUMP_FORWARD fewer, other "
            "offsets): the test hard-codes 3.12's"),
    },
}


def _load_runner() -> ModuleType:
    """The runner module, loaded from the checkout's tools/ (it is not installed)."""
    spec = importlib.util.spec_from_file_location("cpython_test_monitoring", RUNNER)
    assert spec is not None and spec.loader is not None, RUNNER
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child_env() -> Dict[str, str]:
    """This process's environment, with the lowimpact it imports first on the child's path.

    The child must test the same build as this process (an installed copy in
    a virtual environment, a sanitizer build, or the checkout's src/).
    """
    env = dict(os.environ)
    if sys.version_info < (3, 12):
        import lowimpact

        where = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (where, env.get("PYTHONPATH")) if p)
    return env


def test_cpython_test_monitoring() -> None:
    """The file's failing tests on this interpreter are exactly KNOWN_FAILURES' list."""
    runner = _load_runner()
    try:
        path = runner.find_test_file()
    except runner.NotFound as e:
        missing = str(e)
    else:
        missing = ""
    if missing:
        pytest.fail(missing, pytrace=False)
    known = KNOWN_FAILURES.get(sys.version_info[:2])
    assert known is not None, "no known-failure list for CPython %d.%d" % sys.version_info[:2]

    report = runner.run(path, sys.executable, env=_child_env())
    if "crash" in report or not report["run"]:
        pytest.fail(runner.format_report(report), pytrace=False)

    assert report.get("left_out", []) == LEFT_OUT.get(sys.version_info[:2], []), report["notes"]

    failing = runner.failed(report)
    new = sorted(set(failing) - set(known))
    fixed = sorted(set(known) - set(failing))
    # A known failure that now raises something other than an assertion
    # failure (or than its known error) is a change too.
    errors = KNOWN_ERRORS.get(sys.version_info[:2], {})

    def as_known(name: str) -> bool:
        outcome = report["outcomes"][name]["outcome"]
        if name in errors:
            return outcome == "error" and failing[name].startswith(errors[name] + ":")
        return outcome == "fail"

    changed = sorted(name for name in set(known) & set(failing) if not as_known(name))
    if new or fixed or changed:
        lines = []
        if report["sha256"] != KNOWN_SHA256:
            lines.append("note: %s is not the version of the file the known failures were "
                         "listed for (CPython 3.12.1's)" % path)
        lines += ["new failure: %s\n    %s" % (name, failing[name]) for name in new]
        lines += ["known failure, now an error: %s\n    %s" % (name, failing[name])
                  for name in changed]
        lines += ["%s: %s (known cause: %s)" % (
            "unexpectedly passed" if name in report["outcomes"] else "not in the file",
            name, known[name]) for name in fixed]
        lines.append(runner.format_report(report, verbose=bool(new or changed)))
        pytest.fail("\n".join(lines), pytrace=False)


@pytest.mark.skipif(sys.version_info[:2] not in ((3, 9), (3, 10)),
                    reason="the 3.9 and 3.10 known failures' check")
def test_known_failures_pass_on_own_bytecode() -> None:
    """Each known failure on 3.9 and 3.10 passes with its assertions about
    3.12's bytecode replaced by that version's account of its own
    (cpython_monitoring_310.py)."""
    runner = _load_runner()
    try:
        runner.find_test_file()
    except runner.NotFound as e:
        pytest.fail(str(e), pytrace=False)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpython_monitoring_310.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600,
                          env=_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = json.loads(proc.stdout)
    assert {name: why for name, why in outcomes.items() if why != "pass"} == {}
    assert {name.split(" (")[0] for name in KNOWN_FAILURES[sys.version_info[:2]]} <= set(outcomes)
