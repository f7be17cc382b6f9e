"""The static analysis of :mod:`lowimpact.tools.cover.arcs` on the running
interpreter's bytecode, apart from the engine: a program runs under
``sys.settrace`` with opcode events, which give what BRANCH events give
(each branch instruction and the instruction that ran next), what LINE
gives, and the offsets frames return or yield at; ``Measurement.measured``
turns them into arcs as it does the core's data, and ``coverage json`` of
them must equal that of coverage.py's C tracer on the same program.

This is how 3.10's bytecode (block stack, SETUP_*, `finally` bodies copied,
JUMP_IF_NOT_EXC_MATCH) is checked before its engine delivers BRANCH events;
test_oracle.py checks the same programs end to end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import copy_programs, coverage_json, describe, python, run_ctrace

# The programs' every branch instruction goes on to the next instruction or
# jumps; the settrace run records which, per code object.
DRIVER = r'''
import dis, os, runpy, sys
from coverage.files import canonical_filename
from lowimpact.tools.cover.arcs import CodeMap
from lowimpact.tools.cover.measure import Measurement

data_file, program = sys.argv[1], os.path.abspath(sys.argv[2])
here = os.path.dirname(program)
codes, lines, branches, exits = {}, {}, {}, {}
branch_offsets = {}   # code id -> offsets of its branch instructions
exit_ops = {dis.opmap[name] for name in ("RETURN_VALUE", "YIELD_VALUE", "RETURN_CONST")
            if name in dis.opmap}

def local(frame, event, arg):
    code = frame.f_code
    key = id(code)
    if event == "line":
        lines.setdefault(key, set()).add(frame.f_lineno)
    elif event == "opcode":
        previous = previous_of.get(frame)
        if previous in branch_offsets[key]:
            branches.setdefault(key, {}).setdefault(previous, set()).add(frame.f_lasti)
        # An instruction with EXTENDED_ARG has one opcode event, at its
        # prefix (dis, and BRANCH, name the instruction itself).
        offset = frame.f_lasti
        while code.co_code[offset] == dis.EXTENDED_ARG:
            offset += 2
        previous_of[frame] = offset
    elif event == "return":
        previous_of.pop(frame, None)
        if code.co_code[frame.f_lasti] in exit_ops:
            exits.setdefault(key, set()).add(frame.f_lasti)
    return local

previous_of = {}

def start(frame, event, arg):
    code = frame.f_code
    if (not os.path.isfile(code.co_filename)
            or os.path.dirname(os.path.abspath(code.co_filename)) != here):
        return None
    if id(code) not in codes:
        codes[id(code)] = (code, canonical_filename(code.co_filename))
        branch_offsets[id(code)] = {point.offset for point in CodeMap(code).branch_points()}
    frame.f_trace_opcodes = True
    return local(frame, event, arg)

sys.argv = sys.argv[2:]
sys.path[0] = here
sys.settrace(start)
try:
    runpy.run_path(program, run_name="__main__")
finally:
    sys.settrace(None)

import coverage
measurement = Measurement(branch=True, data_file=data_file)
_, file_arcs, _ = measurement.measured(codes, (lines, branches, exits))
data = coverage.CoverageData(basename=data_file)
data.add_arcs(file_arcs)
data.write()
'''


@pytest.mark.skipif(sys.version_info >= (3, 12), reason=(
    "3.12+ have BRANCH natively (test_oracle.py); settrace's opcode events there do not "
    "give the pairs BRANCH gives (their differences are not analysed)"))
@pytest.mark.parametrize("program", ["branches.py", "raises.py", "branch_shapes.py", "finally_shapes.py",
                                     "gen_async.py", "module_level.py", "first_calls.py"])
def test_arcs_from_opcode_events_same_as_ctrace(program: str, tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    (tmp_path / "ctrace").mkdir()
    (tmp_path / "emulated").mkdir()
    reference = run_ctrace(("--branch", program), programs, tmp_path / "ctrace" / ".coverage")
    assert reference["totals"]["num_branches"] > 0
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    data_file = tmp_path / "emulated" / ".coverage"
    python([str(driver), str(data_file), program], programs)
    tested = coverage_json(data_file, programs)
    assert tested == reference, describe(reference, tested)
