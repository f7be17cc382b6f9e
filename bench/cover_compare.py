"""Does `lowimpact cover` record what coverage.py's C tracer records, on real test suites?

    python bench/cover_compare.py [--python PY ...] [--suites NAME ...] [--project DIR]

For each interpreter and suite it runs the suite twice -- `coverage run`
on coverage.py's C tracer (COVERAGE_CORE=ctrace) and `lowimpact cover run`,
same options, lines then `--branch` -- and compares `coverage json` of the
two data files (a measured module that `coverage run` imports itself before
the program, such as textwrap, is imported before lowimpact's run too: the
program's import of it runs its module code under lowimpact, not under
coverage run; docs/COVER.md) (everything but its "meta" block: per-file executed and
missing lines and branches, functions, classes, totals).  It prints one row
per suite and mode: equal or not, and the size of what was compared.

The suites are stdlib modules' own test suites and a real project from the
package index with its tests (more-itertools, whose sdist ships them; fetched
with `pip download` unless --project names an unpacked copy).  Each
interpreter needs coverage.py, and lowimpact installed or importable from
src/ (built in place).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SRC = Path(__file__).resolve().parent.parent / "src"

# name -> (source to measure, unittest arguments); "project" runs in the project.
SUITES: Dict[str, Tuple[str, List[str]]] = {
    "json": ("json,test.test_json", ["test.test_json"]),
    "bisect+heapq": ("bisect,heapq,test.test_bisect,test.test_heapq",
                     ["test.test_bisect", "test.test_heapq"]),
    "textwrap": ("textwrap,test.test_textwrap", ["test.test_textwrap"]),
    "difflib": ("difflib,test.test_difflib", ["test.test_difflib"]),
    "fractions+statistics": ("fractions,statistics,test.test_fractions,test.test_statistics",
                             ["test.test_fractions", "test.test_statistics"]),
    "more-itertools": ("more_itertools,tests", ["discover", "-s", "tests", "-t", "."]),
}


def run(argv: List[str], cwd: Path, env: Dict[str, str]) -> int:
    """Run *argv*; its status when it is 0 or 1 (a failing test), else raise."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError("%s exited with %d:\n%s" % (" ".join(argv[:8]), proc.returncode,
                                                       proc.stderr[-3000:]))
    return proc.returncode


def report(python: str, data: Path, cwd: Path, env: Dict[str, str]) -> dict:
    out = data.with_suffix(".json")
    run([python, "-m", "coverage", "json", "-q", "--data-file", str(data), "-o", str(out)],
        cwd, env)
    content = json.loads(out.read_text())
    content.pop("meta")
    return content


def differences(reference: dict, tested: dict) -> List[str]:
    out = []
    for name in sorted(set(reference["files"]) | set(tested["files"])):
        ref, got = reference["files"].get(name), tested["files"].get(name)
        if ref is None or got is None:
            out.append("%s only in %s" % (name, "lowimpact" if ref is None else "ctrace"))
            continue
        for key in ("executed_lines", "executed_branches"):
            ref_set = {tuple(x) if isinstance(x, list) else x for x in ref.get(key, [])}
            got_set = {tuple(x) if isinstance(x, list) else x for x in got.get(key, [])}
            if ref_set != got_set:
                out.append("%s %s: only ctrace %s, only lowimpact %s"
                           % (name, key, sorted(ref_set - got_set), sorted(got_set - ref_set)))
    if not out and reference != tested:
        out.append("same lines and branches, other differences")
    return out


def imported_by_coverage_run(python: str, work: Path, env: Dict[str, str]) -> List[str]:
    """The modules `coverage run` has imported before the program starts."""
    probe = work / "imported_probe.py"
    probe.write_text("import json, sys\nprint(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([python, "-m", "coverage", "run", "--data-file", str(work / "probe.data"),
                           str(probe)], cwd=work, env=dict(env, COVERAGE_CORE="ctrace"),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def compare(python: str, suite: str, branch: bool, project: Path, work: Path) -> Tuple[bool, str]:
    source, args = SUITES[suite]
    cwd = project if suite == "more-itertools" else work
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(cwd)])
    quiet = ["discover", "-q", *args[1:]] if args[0] == "discover" else ["-q", *args]
    options = (["--branch"] if branch else []) + ["--source", source, "-m", "unittest", *quiet]
    # coverage run imports some measured modules itself (textwrap, json)
    # before the program, whose import of them then runs none of their
    # module code; lowimpact's program process imports nothing of
    # coverage.py and measures that code.  The same run for both: the
    # lowimpact run imports them first too.
    packages = source.split(",")
    first = [name for name in imported_by_coverage_run(python, work, env)
             if any(name == package or name.startswith(package + ".") for package in packages)]
    results = {}
    failed = []
    for tool in ("ctrace", "lowimpact"):
        data = work / ("%s-%s-%s.data" % (suite, tool, branch))
        tool_env = dict(env, COVERAGE_CORE="ctrace") if tool == "ctrace" else env
        head = (["-m", "coverage", "run"] if tool == "ctrace"
                else ["-m", "lowimpact", "cover", "run"])
        if tool == "lowimpact" and first:
            head = ["-c", "import runpy, %s; runpy.run_module('lowimpact', run_name='__main__', "
                    "alter_sys=True)" % ", ".join(first), "cover", "run"]
        if run([python, *head, "--data-file", str(data), *options], cwd, tool_env):
            failed.append(tool)
        results[tool] = report(python, data, cwd, env)
    diff = differences(results["ctrace"], results["lowimpact"])
    if failed:
        # Not the same run: a test failed (a timing-dependent one, on a busy
        # machine) and took another path.
        diff.insert(0, "tests failed under %s: the runs differ, rerun" % " and ".join(failed))
    totals = results["ctrace"]["totals"]
    size = "%d files, %d statements, %d branches" % (
        len(results["ctrace"]["files"]), totals["num_statements"], totals.get("num_branches", 0))
    if first:
        size += " (%s imported first)" % ", ".join(first)
    return not diff, size if not diff else size + "\n    " + "\n    ".join(diff[:10])


def fetch_project(into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                    ":all:", "-d", str(into), "more-itertools"], check=True)
    (archive,) = into.glob("more_itertools-*.tar.gz")
    shutil.unpack_archive(str(archive), str(into))
    return next(p for p in into.iterdir() if p.is_dir() and p.name.startswith("more_itertools-"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--project", type=Path, help="an unpacked more-itertools sdist")
    options = parser.parse_args()
    status = 0
    with tempfile.TemporaryDirectory(prefix="lowimpact-cover-compare") as tmp:
        work = Path(tmp)
        project: Optional[Path] = options.project
        if project is None and "more-itertools" in options.suites:
            project = fetch_project(work / "project")
        for python in options.python or [sys.executable]:
            version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                     capture_output=True, text=True).stdout.strip()
            print("\n## CPython %s (%s)\n" % (version, python))
            print("| suite | mode | same coverage json as ctrace | compared |")
            print("|---|---|---|---|")
            for suite in options.suites:
                for branch in (False, True):
                    same, detail = compare(python, suite, branch, project or work, work)
                    status |= not same
                    print("| %s | %s | %s | %s |" % (suite, "branches" if branch else "lines",
                                                      "yes" if same else "NO", detail), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
