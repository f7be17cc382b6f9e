"""``cover subline``: which directions of each branch point of a line ran.

The expectations are read off the program by hand: ``both(True, False)``
and ``both(False, False)`` make ``a`` both true and false, ``b`` only
false; and so on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .helpers import copy_programs, python


def cover(args, cwd: Path, check: bool = True):
    return python(["-m", "lowimpact", "cover", *args], cwd, check=check)


@pytest.fixture
def report(tmp_path: Path) -> dict:
    programs = copy_programs(tmp_path)
    cover(["run", "--branch", "subline_cases.py"], programs)
    cover(["subline", "--all", "--json", "report.json"], programs)
    report = json.loads((programs / "report.json").read_text())
    return report["files"][str(programs / "subline_cases.py")]["lines"]


def points(report: dict, line: int) -> list:
    return [(p["text"], p["directions"]) for p in report[str(line)]["branch_points"]]


def test_and_condition(report: dict) -> None:
    assert points(report, 2) == [
        ("a", {"false": True, "true": True}),
        ("b", {"false": True, "true": False}),
    ]


def test_conditional_expression(report: dict) -> None:
    # either(False, True): a false, then b true; "no" never chosen.
    assert points(report, 8) == [
        ("a", {"true": False, "false": True}),
        ("b", {"false": False, "true": True}),
    ]


def test_loop_condition_compiled_twice_is_one_point_each(report: dict) -> None:
    # items non-empty twice and empty never; items[0] None once, 1 once.
    # "x is not None" is a jump on x being None: the point is x, by None-ness.
    assert points(report, 12) == [
        ("items", {"false": False, "true": True}),
        ("items[0]", {"None": True, "not None": True}),
    ]


def test_lone_conditional_expression(report: dict) -> None:
    # coverage.py sees one exit on line 23 ("value = ..."): its only branch
    # point is inside the line.  pick(True) only.
    assert points(report, 23) == [("c", {"false": False, "true": True})]


def test_statement_branches_alone_are_coverage_pys(report: dict) -> None:
    # A lone `for` or `if` is the line's own branch, which coverage.py reports.
    assert "28" not in report and "30" not in report


def test_columns_are_the_tested_values(report: dict) -> None:
    first = report["2"]["branch_points"][0]
    assert (first["col"], first["end_col"]) == (7, 8)   # "a" in "    if a and b:"


def test_text_report_lists_only_partly_run_lines(tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    cover(["run", "--branch", "subline_cases.py"], programs)
    text = cover(["subline"], programs).stdout
    assert "subline_cases.py:2" in text and "true: MISSED" in text
    assert "lines with sub-line branches" in text


def test_needs_branch_data(tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    cover(["run", "subline_cases.py"], programs)
    proc = cover(["subline"], programs, check=False)
    assert proc.returncode == 1 and "--branch" in proc.stderr


# subline_tricky.py: shapes where CPython 3.10's points are placed by its
# source (lowimpact/tools/cover/columns310.py), read off the program by hand.
# 3.10 and 3.11 compile them alike and report them alike; 3.12 places the
# jump of an and/or in a value at the whole expression, and a multi-line
# condition's operands on their own lines; 3.13 places a comprehension's
# FOR_ITER at its iterable.  Columns are 0-based here.
BEFORE_312 = sys.version_info < (3, 12)


@pytest.fixture
def tricky(tmp_path: Path) -> tuple:
    programs = copy_programs(tmp_path)
    run = cover(["run", "--branch", "subline_tricky.py"], programs)
    cover(["subline", "--all", "--json", "report.json"], programs)
    report = json.loads((programs / "report.json").read_text())
    return report["files"][str(programs / "subline_tricky.py")]["lines"], run.stderr


def placed(report: dict, line: int) -> list:
    return [(p["col"], p["end_col"], p["text"], p["directions"])
            for p in report[str(line)]["branch_points"]]


def test_nested_comprehensions_on_one_line(tricky: tuple) -> None:
    # nested([[1, 5], None, []], 3): both loops run out; y is never false
    # (1 and 5), y < limit both ways; x None once, not None twice.
    report = tricky[0]
    ran, both = {"exhausted": True, "next item": True}, {"false": True, "true": True}
    checked = [(29, 30, "y", {"false": False, "true": True}), (35, 44, "y < limit", both)]
    if sys.version_info < (3, 13):
        expected = [(11, 75, "[[y for y in x if y and y < limit] for x in xs if x is not None]",
                     ran),
                    (12, 45, "[y for y in x if y and y < limit]", ran),
                    *checked, (61, 62, "x", {"None": True, "not None": True})]
    else:
        expected = [(24, 25, "x", ran), *checked,
                    (50, 51, "x", {"None": True, "not None": True}), (55, 57, "xs", ran)]
    assert placed(report, 8) == expected


def test_nested_lambdas_on_one_line(tricky: tuple) -> None:
    # lambdas(1, 0), lambdas(0, 1): s = r and q is falsy both times, so
    # "s or r" never stops at s; r true once, false once.
    report = tricky[0]
    if BEFORE_312:
        assert placed(report, 20) == [(33, 34, "s", {"true": False, "false": True}),
                                      (41, 42, "r", {"false": True, "true": True})]
    else:
        assert placed(report, 20) == [(33, 39, "s or r", {"true": False, "false": True}),
                                      (41, 48, "r and q", {"false": True, "true": True})]


def test_decorators(tricky: tuple) -> None:
    # deco(True) and deco(1 > 0 and True): flag never false.
    report = tricky[0]
    assert placed(report, 2) == [(28, 32, "flag", {"false": False, "true": True})]
    condition = (6, 11, "1 > 0") if BEFORE_312 else (6, 20, "1 > 0 and True")
    assert placed(report, 6) == [(*condition, {"false": False, "true": True})]


def test_multi_line_condition(tricky: tuple) -> None:
    # multi(True, True, False), multi(False, False, False): a both ways;
    # b only true (evaluated when a is); "not c" true once (c false), never
    # false.
    report = tricky[0]
    if BEFORE_312:
        # The jumps are on the statement's line (12), where b and c are
        # not: no columns, one point (as 3.11's co_positions() gives it).
        assert placed(report, 12) == [(None, None, "", {"true": True, "false": True}),
                                      (8, 9, "a", {"false": True, "true": True})]
    else:
        assert placed(report, 13) == [(12, 13, "b", {"true": True, "false": False})]
        assert placed(report, 14) == [(12, 13, "c", {"true": False, "false": True})]


def test_code_that_is_not_its_source_compiled_again(tricky: tuple) -> None:
    # unmatched(0): x false.  On 3.10, `return True and y` compiled with
    # renumbered lines keeps a NOP that the code that ran does not have: its
    # code object's points keep no columns, and the run says so.  3.9's
    # compiler keeps no NOP there: the columns are recovered.
    report, stderr = tricky
    if sys.version_info[:2] == (3, 10):
        assert placed(report, 24) == [(None, None, "", {"false": True, "true": False})]
        assert "subline-no-columns" in stderr and "subline_tricky.py" in stderr
    else:
        assert placed(report, 24) == [(8, 9 if BEFORE_312 else 19,
                                       "x" if BEFORE_312 else "x and x > 1",
                                       {"false": True, "true": False})]
        assert "subline-no-columns" not in stderr
