"""``cover subline``: which directions of each branch point of a line ran.

The expectations are read off the program by hand: ``both(True, False)``
and ``both(False, False)`` make ``a`` both true and false, ``b`` only
false; and so on.
"""

from __future__ import annotations

import json
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
