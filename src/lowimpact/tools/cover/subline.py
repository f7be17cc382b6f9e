"""Branches inside lines: ``python -m lowimpact cover subline``.

coverage.py reports a branch per line: ``if a and b:`` is one line with two
exits.  The C core records every branch instruction's directions, and
CPython 3.11+ gives each instruction its columns, so a line with several
branch points (``a``, ``b``, each arm of a conditional expression, each
``for`` of a comprehension) can say which directions of which of them ran,
and so can a line whose single branch point coverage.py does not see
(``x = a if c else b``, ``return a or b``: one exit for coverage.py).

The data is a JSON file beside coverage.py's data file (``.coverage`` ->
``.coverage-subline.json``), written by ``cover run --branch``: per file, a
list of ``[line, col, end_col, {meaning: ran}]`` where the meanings are
those of the value tested (``"true"``/``"false"``, ``"None"``/``"not None"``,
``"next item"``/``"exhausted"``) and columns are 0-based UTF-8 offsets as in
``co_positions()`` (None where unknown).

CPython 3.9 and 3.10 have no columns: :mod:`.columns310` recovers them from the
source when the data is saved.  Where it cannot (code that is not its
source compiled again), the points of a code object have None there, and
those of one line count as one (their directions merged).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import linecache
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Set

from lowimpact.tools.cover.measure import subline_path

# argparse is imported by the commands that parse: `cover run --branch`
# imports this module to write the data, and argparse (with gettext, locale
# and shutil) would add to the start-up cost of every measured run.

__all__ = ["analyse", "combine_after_coverage", "combine_files", "load", "main"]

PROG = "python -m lowimpact cover subline"

#: The layout of the data file; another number is refused.
FORMAT = 2


def load(path: str) -> Dict[str, list]:
    """The branch points per file in the sub-line data file at *path*."""
    with open(path, encoding="utf-8") as stream:
        content = json.load(stream)
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError("%s is not a lowimpact sub-line data file" % path)
    return content["files"]


def merge(into: Dict[str, list], more: Dict[str, list]) -> None:
    """Add the branch points of *more* to *into*.

    Points at the same place are one point (a loop condition is compiled
    twice, at the top and at the bottom; a module run twice has its code
    twice); a direction ran if it ran in any of them.
    """
    for filename, points in more.items():
        known = {(p[0], p[1], p[2]): p for p in into.setdefault(filename, [])}
        for line, col, end_col, directions in points:
            point = known.get((line, col, end_col))
            if point is None:
                point = known[line, col, end_col] = [line, col, end_col, {}]
                into[filename].append(point)
            for meaning, ran in directions.items():
                point[3][meaning] = point[3].get(meaning, False) or ran
        into[filename].sort(key=lambda p: (p[0], -1 if p[1] is None else p[1]))


def write(path: str, files: Dict[str, list]) -> None:
    """Write the sub-line data file at *path* whole, or not at all."""
    temporary = path + ".tmp%d" % os.getpid()
    try:
        # (dumps, not dump: only a one-shot encoding uses json's C encoder.)
        text = json.dumps({"format": FORMAT, "files": files})
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _source_text(filename: str, line: int, col: Optional[int], end_col: Optional[int]) -> str:
    text = linecache.getline(filename, line).rstrip("\n")
    if col is None:
        return ""
    # Columns are UTF-8 byte offsets.
    encoded = text.encode("utf-8")
    piece = encoded[col:end_col] if end_col is not None else encoded[col:]
    return piece.decode("utf-8", "replace").strip()


def _line_branches(filename: str) -> Optional[Set[int]]:
    """The lines coverage.py itself reports as branches (statements with
    several exits: ``if``, ``while``, ``for``...).  A single branch point on
    such a line is the line's branch; elsewhere (``x = a if c else b``,
    ``return a or b``) coverage.py does not see it at all."""
    from coverage.parser import PythonParser

    try:
        parser = PythonParser(filename=filename)
        parser.parse_source()
        return {line for line, count in parser.exit_counts().items() if count > 1}
    except Exception:
        return None


def analyse(files: Dict[str, list], *, show_all: bool = False) -> Dict[str, Any]:
    """The report: lines with sub-line branches (several branch points, or
    one that is not coverage.py's line branch), per file, and totals.

    Without *show_all*, only the lines where some direction did not run.
    """
    report: Dict[str, Any] = {"files": {}, "totals": {}}
    n_lines = n_points = n_directions = n_run = 0
    for filename in sorted(files):
        by_line: Dict[int, list] = {}
        for point in files[filename]:
            by_line.setdefault(point[0], []).append(point)
        lines_out = {}
        line_branches = _line_branches(filename)
        for line in sorted(by_line):
            points = by_line[line]
            if len(points) < 2 and (line_branches is None or line in line_branches):
                continue
            directions = [ran for p in points for ran in p[3].values()]
            n_lines += 1
            n_points += len(points)
            n_directions += len(directions)
            n_run += sum(directions)
            if all(directions) and not show_all:
                continue
            lines_out[str(line)] = {
                "source": linecache.getline(filename, line).strip(),
                "branch_points": [
                    {
                        "col": col,
                        "end_col": end_col,
                        "text": _source_text(filename, line, col, end_col),
                        "directions": dict(directions),
                    }
                    for _, col, end_col, directions in points
                ],
            }
        if lines_out:
            report["files"][filename] = {"lines": lines_out}
    report["totals"] = {
        "lines_with_subline_branches": n_lines,
        "branch_points": n_points,
        "directions": n_directions,
        "directions_run": n_run,
        "percent_directions_run": (100.0 * n_run / n_directions) if n_directions else 100.0,
    }
    return report


def format_text(report: Dict[str, Any]) -> str:
    """The report as text, one branch point a row under its line."""
    out: List[str] = []
    unplaced = False
    for filename, entry in report["files"].items():
        for line, detail in entry["lines"].items():
            out.append("%s:%s  %s" % (os.path.relpath(filename), line, detail["source"]))
            for point in detail["branch_points"]:
                unplaced = unplaced or point["col"] is None
                where = "col %s-%s" % (
                    "?" if point["col"] is None else point["col"] + 1,
                    "" if point["end_col"] is None else point["end_col"],
                )
                ways = "   ".join(
                    "%s: %s" % (meaning, "ran" if ran else "MISSED")
                    for meaning, ran in point["directions"].items()
                )
                out.append("    %-12s %-24s %s" % (where, point["text"][:24], ways))
    if unplaced:
        out.append("col ?: a point without columns (its value is on another line, or CPython "
                   "3.10 code that is not its source compiled again); on a line, the "
                   "directions of such points are merged")
    totals = report["totals"]
    out.append(
        "%d lines with sub-line branches: %d of %d directions ran (%.1f%%)"
        % (
            totals["lines_with_subline_branches"],
            totals["directions_run"],
            totals["directions"],
            totals["percent_directions_run"],
        )
    )
    return "\n".join(out) + "\n"


def _data_file(data_file: Optional[str], rcfile: Any) -> str:
    import coverage

    kwargs: Dict[str, Any] = {"config_file": rcfile}
    if data_file is not None:
        kwargs["data_file"] = data_file
    return os.path.abspath(coverage.Coverage(**kwargs).get_option("run:data_file"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Report the branches inside lines: for each line with more than one "
        "branch point, or with one that coverage.py does not report (a conditional "
        "expression, and/or in an expression), which directions of each ran, with columns.  Needs data from "
        "'cover run --branch'.",
    )
    parser.add_argument("--data-file", metavar="INFILE", help="coverage.py's data file")
    parser.add_argument("--rcfile", default=True, help="the configuration file")
    parser.add_argument("--include", metavar="PAT1,PAT2", help="only files matching these patterns")
    parser.add_argument("--omit", metavar="PAT1,PAT2", help="not the files matching these patterns")
    parser.add_argument("--all", action="store_true", help="also lines where every direction ran")
    parser.add_argument("--json", metavar="FILE", dest="json_file",
                        help="write the report as JSON to FILE ('-': standard output)")
    parser.add_argument("--html", metavar="DIR", dest="html_dir",
                        help="write the report as an HTML page, DIR/index.html")
    options = parser.parse_args(argv)
    try:
        path = subline_path(_data_file(options.data_file, options.rcfile))
        files = load(path)
    except FileNotFoundError as exc:
        print("%s: error: no sub-line data: %s (measure with 'cover run --branch')"
              % (PROG, exc.filename), file=sys.stderr)
        return 1
    except Exception as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return 1
    include = [p for p in (options.include or "").split(",") if p]
    omit = [p for p in (options.omit or "").split(",") if p]
    files = {
        f: points
        for f, points in files.items()
        if (not include or any(fnmatch.fnmatch(f, p) for p in include))
        and not any(fnmatch.fnmatch(f, p) for p in omit)
    }
    report = analyse(files, show_all=options.all)
    if options.html_dir is not None:
        from lowimpact.tools.cover.subline_html import write_html

        print("Wrote sub-line HTML report to %s" % write_html(report, options.html_dir))
    elif options.json_file is None:
        sys.stdout.write(format_text(report))
    elif options.json_file == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        with open(options.json_file, "w", encoding="utf-8") as stream:
            json.dump(report, stream, indent=2)
    return 0


def combine_after_coverage(argv: Sequence[str]) -> None:
    """After ``coverage combine``: merge the parallel sub-line files the same way."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-file")
    parser.add_argument("--rcfile", default=True)
    parser.add_argument("-a", "--append", action="store_true")
    parser.add_argument("--keep", action="store_true")
    options, _ = parser.parse_known_args(list(argv))
    combine_files(_data_file(options.data_file, options.rcfile), append=options.append,
                  keep=options.keep)


def combine_files(data_file: str, *, append: bool, keep: bool) -> None:
    """Merge the parallel sub-line files of *data_file* into its sub-line file
    (adding to what it holds with *append*; removing them unless *keep*)."""
    target = subline_path(data_file)
    parts = sorted(glob.glob(glob.escape(data_file) + "-subline.*.json"))
    if not parts:
        return
    files: Dict[str, list] = {}
    if append and os.path.exists(target):
        merge(files, load(target))
    for part in parts:
        merge(files, load(part))
    write(target, files)
    if not keep:
        for part in parts:
            os.remove(part)
