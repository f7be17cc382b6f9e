"""``coverage json`` of lowimpact cover's data equals that of coverage.py's C
tracer's data for the same run, lines and branches (``--branch``).

Both runs see the same files; the reports are coverage.py's own, so the
comparison covers everything the reports show: executed and missing lines,
executed and missing branches, per-function and per-class regions, totals.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from clients.test_coverage_sysmon import STDLIB_SOURCE, STDLIB_SUITES
from .helpers import copy_programs, describe, run_ctrace, run_lowimpact

# name -> (coverage run arguments, files that must have executed lines)
CASES = {
    "branches": (("branches.py",), ("branches.py",)),
    # a branch to a raise: to the except clause, or out of the frame
    "raises": (("raises.py",), ("raises.py",)),
    # if/elif, loops with else, try/finally, with, match, comprehensions,
    # lambdas, generators, async: the translation of BRANCH events to arcs
    "branch_shapes": (("branch_shapes.py",), ("branch_shapes.py",)),
    # break, continue, return and raise through `finally` and `with`
    "finally_shapes": (("finally_shapes.py",), ("finally_shapes.py",)),
    # the shapes above run many times one way: the branches whose events
    # stop early, their other way taken from the lines
    "hot_shapes": (("hot_shapes.py",), ("hot_shapes.py", "branch_shapes.py",
                                        "finally_shapes.py")),
    "module_level": (("--source=.", "module_level.py"), ("module_level.py",)),
    "first_calls": (("--source=.", "first_calls.py"), ("first_calls_helper.py",)),
    "gen_async": (("--source=.", "gen_async.py"), ("gen_async.py",)),
    "threaded": (("--source=.", "threaded.py"), ("threaded.py",)),
    "dash_m": (("--source=.", "-m", "calc", "2 * 5 - 1", "7 + 1"), ("calc/ops.py",)),
    "omit_include": (("--include=*/calc/*", "--omit=*/calc/__main__.py", "-m", "calc", "1 + 2"),
                     ("calc/ops.py",)),
    "stdlib_suites": (
        ("--source=" + STDLIB_SOURCE, "-m", "unittest", "-q",
         *STDLIB_SUITES),
        tuple(os.path.join(sysconfig.get_path("stdlib"), name)
              for name in ("bisect.py", "json/decoder.py", "json/encoder.py")),
    ),
}


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_report_as_ctrace(case: str, branch: bool, tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    run_args, must_measure = CASES[case]
    run_args = (("--branch",) if branch else ()) + run_args
    (tmp_path / "ctrace").mkdir()
    (tmp_path / "lowimpact").mkdir()
    reference = run_ctrace(run_args, programs, tmp_path / "ctrace" / ".coverage")
    tested = run_lowimpact(run_args, programs, tmp_path / "lowimpact" / ".coverage")
    for name in must_measure:
        # coverage json names files under the current directory relatively.
        entry = reference["files"].get(name) or reference["files"].get(str(programs / name))
        assert entry and entry["executed_lines"], (
            "ctrace measured nothing in %s: the comparison would prove nothing" % name)
    if branch:
        assert reference["totals"]["num_branches"] > 0
    assert tested == reference, describe(reference, tested)
