"""Run CPython 3.12's own ``Lib/test/test_monitoring.py`` against this interpreter.

On CPython 3.10 and 3.11 the file runs against lowimpact's engine
(``lowimpact.install()`` puts ``lowimpact.monitoring`` at ``sys.monitoring``);
on 3.12 and newer against the interpreter's own ``sys.monitoring``, which is
the baseline.  The file is read at run time from a CPython 3.12 installation
and executed unmodified on 3.11+:

    python tools/cpython_test_monitoring.py [--file PATH] [--python EXE] [--json] [-v]

The file is found, in this order, at ``--file``, at ``$LOWIMPACT_CPYTHON_TESTS``
(the file itself, or a directory holding it, such as CPython's ``Lib/test``),
or in the newest ``$(pyenv root)/versions/3.12.*/lib/python3.12/test/``.

What 3.10 and 3.11 lack and how the run provides it:

* ``sys.monitoring`` (with CPython's private ``_all_events()``, which the
  file uses): ``lowimpact.install()``.
* ``test.profilee``, the one helper module the file imports, is taken from the
  running interpreter's ``test`` package: 3.12's calls ``sys.exception()``,
  which 3.10 and 3.11 lack, where theirs calls ``sys.exc_info()`` on the same
  line (both C functions, so the events are the same shape).
* 3.10's parser: ``except*`` is 3.11 syntax, so on 3.10 the test that uses it,
  ``TestBranchAndJumpEvents.test_except_star``, is taken out before the file is
  compiled (found with ``tokenize``; the method becomes ``pass`` and blank
  lines, so every other line keeps its number).  The report's notes name it.

Nothing else is needed: the file imports no ``test.support``, ``_testcapi`` or
``_testinternalcapi``, and compiles with 3.11's parser.

The tests run in a fresh child process (a crash there is reported as one, with
the test that was running).  Exit status: 0 if every test passed, 1 if some
failed, 2 if the file was not found or the child crashed.
"""

from __future__ import annotations

import argparse
import faulthandler
import glob
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tokenize
import traceback
import unittest
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Environment variable naming the test file or a directory that holds it.
ENV_VAR = "LOWIMPACT_CPYTHON_TESTS"
TEST_FILE = "test_monitoring.py"
#: Module name under which the file runs: CPython's, so test ids read as in CPython.
MODULE_NAME = "test.test_monitoring"

HERE = os.path.dirname(os.path.abspath(__file__))
#: The checkout's package sources, used when lowimpact is not importable otherwise.
SRC = os.path.join(os.path.dirname(HERE), "src")


# ---------------------------------------------------------------------------
# Finding the file


def pyenv_root() -> Optional[str]:
    """``$PYENV_ROOT``, else what ``pyenv root`` says, else ``~/.pyenv`` if it exists."""
    root = os.environ.get("PYENV_ROOT")
    if root:
        return root
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True,
                                 timeout=30, check=True)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    default = os.path.expanduser("~/.pyenv")
    return default if os.path.isdir(default) else None


def _version_key(path: str) -> tuple:
    """Sort key of ``.../versions/3.12.<n>/...`` paths by patch number."""
    parts = path.split(os.sep + "versions" + os.sep)[-1].split(os.sep)[0].split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


class NotFound(Exception):
    """The test file is not where the options and the environment point."""


def find_test_file(explicit: Optional[str] = None) -> str:
    """The path of 3.12's ``test_monitoring.py``; raises NotFound saying where it looked."""
    given = explicit or os.environ.get(ENV_VAR)
    if given:
        path = os.path.join(given, TEST_FILE) if os.path.isdir(given) else given
        if os.path.isfile(path):
            return os.path.abspath(path)
        raise NotFound("%s (from %s) is not CPython's %s" % (
            path, "--file" if explicit else "$" + ENV_VAR, TEST_FILE))
    root = pyenv_root()
    pattern = os.path.join(root or "$(pyenv root)", "versions", "3.12.*", "lib",
                           "python3.12", "test", TEST_FILE)
    found = glob.glob(pattern) if root else []
    if not found:
        raise NotFound(
            "CPython 3.12's Lib/test/%s was not found (looked for %s). Install CPython 3.12 "
            "with its test package (`pyenv install 3.12`), or point $%s at the file or at "
            "a directory holding it (a CPython checkout's Lib/test)." % (TEST_FILE, pattern, ENV_VAR))
    return max(found, key=_version_key)


def sha256(path: str) -> str:
    """Hex digest of a file, to tell which version of the test file a result is for."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------
# The child: prepare sys.monitoring, load the file, run it


def prepare_monitoring() -> List[str]:
    """Make ``sys.monitoring`` what the file expects; return notes on what was done."""
    notes: List[str] = []
    if sys.version_info >= (3, 12):
        notes.append("native sys.monitoring")
        return notes
    try:
        import lowimpact
    except ImportError:
        # Running from a checkout: the package is in src/ (built in place).
        sys.path.insert(0, SRC)
        import lowimpact
    lowimpact.install()
    notes.append("lowimpact.install() from %s" % os.path.dirname(lowimpact.__file__))
    return notes


def _uses_except_star(tokens: List[tokenize.TokenInfo], k: int) -> bool:
    """Whether token k starts an ``except*`` clause (3.11+ syntax)."""
    return (tokens[k].type == tokenize.NAME and tokens[k].string == "except" and
            k + 1 < len(tokens) and tokens[k + 1].type == tokenize.OP and
            tokens[k + 1].string == "*")


def compilable_source(source: str) -> Tuple[str, List[str]]:
    """``source`` without what this interpreter cannot compile, and the
    qualified names of the functions taken out for it.

    Before 3.11, a function that uses ``except*`` (the outermost function
    around it, a test method) is replaced by ``pass`` and blank lines, so
    that every other line keeps its number.
    """
    if sys.version_info >= (3, 11):
        return source, []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    # Open `def` and `class` blocks: (name, indentation depth of the
    # statement, first line); a block ends at the DEDENT back to its depth.
    open_blocks: List[Tuple[str, int, int]] = []
    depth = 0
    spans: Dict[str, Tuple[int, int]] = {}
    outermost_def: Optional[int] = None     # index in open_blocks
    marked = False
    for k, tok in enumerate(tokens):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type in (tokenize.DEDENT, tokenize.ENDMARKER):
            depth -= tok.type == tokenize.DEDENT
            while open_blocks and open_blocks[-1][1] >= depth:
                name, _, first = open_blocks.pop()
                if outermost_def == len(open_blocks):
                    if marked:
                        qualname = ".".join([b[0] for b in open_blocks] + [name])
                        spans[qualname] = (first, tok.start[0] - 1)
                    outermost_def, marked = None, False
        elif tok.type == tokenize.NAME and tok.string in ("def", "class") and \
                k + 1 < len(tokens):
            if tok.string == "def" and outermost_def is None:
                outermost_def = len(open_blocks)
            open_blocks.append((tokens[k + 1].string, depth, tok.start[0]))
        elif _uses_except_star(tokens, k) and outermost_def is not None:
            marked = True
    lines = source.splitlines(keepends=True)
    for first, last in spans.values():
        indent = lines[first - 1][:len(lines[first - 1]) - len(lines[first - 1].lstrip())]
        lines[first - 1] = indent + "pass\n"
        for n in range(first, last):
            lines[n] = "\n"
    return "".join(lines), sorted(spans)


def load_tests(path: str) -> Tuple[unittest.TestSuite, List[str]]:
    """Execute the file as module ``test.test_monitoring`` and collect its
    tests; also the names of the tests taken out (compilable_source())."""
    # The parent package first, so that the file's `from test.profilee import
    # testfunc` finds the running interpreter's helper.
    import test  # noqa: F401

    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    with open(path, encoding="utf-8") as f:
        source, left_out = compilable_source(f.read())
    exec(compile(source, path, "exec"), module.__dict__)
    return unittest.defaultTestLoader.loadTestsFromModule(module), left_out


def short_id(test: Any) -> str:
    """``Class.test_name`` (plus `` (params)`` for a subtest): the module prefix dropped."""
    name = test.id()
    prefix = MODULE_NAME + "."
    return name[len(prefix):] if name.startswith(prefix) else name


class RecordingResult(unittest.TextTestResult):
    """A text result that also keeps every outcome by short test id."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: Dict[str, Dict[str, str]] = {}

    def _record(self, test: Any, outcome: str, err: Any = None, reason: str = "") -> None:
        entry = {"outcome": outcome}
        if err is not None:
            entry["traceback"] = self._exc_info_to_string(err, test)
            # The exception's first line is the one-line reason (assertEqual
            # adds a diff on the lines after it).
            lines = traceback.format_exception_only(err[0], err[1])[-1].strip().splitlines()
            entry["message"] = lines[0] if lines else err[0].__name__
        if reason:
            entry["message"] = reason
        self.outcomes[short_id(test)] = entry

    def startTest(self, test: Any) -> None:
        # A line per test on stderr, so that a crash can be pinned to a test.
        print("START", short_id(test), file=sys.__stderr__, flush=True)
        super().startTest(test)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self.outcomes.setdefault(short_id(test), {"outcome": "pass"})

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", reason=reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "expected failure", err)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(subtest, "fail" if failed else "error", err)


def child(path: str, result_path: str, verbosity: int) -> int:
    """Run the file's tests in this process and write the results as JSON."""
    # A crash prints the Python stack of every thread to stderr, which the
    # parent shows.
    faulthandler.enable()
    notes = prepare_monitoring()
    import test.profilee

    notes.append("test.profilee from %s" % test.profilee.__file__)
    suite, left_out = load_tests(path)
    notes.extend("left out (not %d.%d syntax): %s" % (sys.version_info[:2] + (name,))
                 for name in left_out)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=verbosity,
                                     resultclass=RecordingResult)
    result = runner.run(suite)
    report = {
        "python": sys.version.split()[0],
        "file": path,
        "sha256": sha256(path),
        "notes": notes,
        "left_out": left_out,
        "run": result.testsRun,
        "failures": len(result.failures),
        "errors": len(result.errors),
        "skipped": len(result.skipped),
        "outcomes": result.outcomes,
    }
    with open(result_path, "w") as f:
        json.dump(report, f, indent=1)
    return 0 if result.wasSuccessful() else 1


# ---------------------------------------------------------------------------
# The parent: start the child, report


def run(path: str, python: Optional[str] = None, verbosity: int = 0,
        timeout: float = 600, env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run the file in a fresh process of ``python`` (environment ``env``) and return its report.

    The report has ``run``, ``failures``, ``errors``, ``skipped`` (unittest's
    counts; a failing subtest counts as a failure), ``outcomes`` (by short test
    id: ``outcome`` and, for failures, ``message`` and ``traceback``),
    ``notes`` and ``left_out`` (the tests this interpreter cannot compile,
    taken out).  If the child dies before reporting, the report has ``crash``
    (its exit status) and ``stderr`` instead, whose START lines show the test
    that was running.  A child that reports but then exits with a status
    other than unittest's 0 or 1 (a crash at interpreter shutdown, or the
    error status of valgrind around it) also gets ``crash``.
    """
    fd, result_path = tempfile.mkstemp(prefix="cpython-test-monitoring-", suffix=".json")
    os.close(fd)
    try:
        command = [python or sys.executable, os.path.abspath(__file__), "--child", path,
                   "--result", result_path, "-v" * verbosity if verbosity else "-q"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=env)
            status, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as timed_out:
            err = timed_out.stderr or b""
            status = "timeout after %gs" % timeout
            stderr = err.decode(errors="replace") if isinstance(err, bytes) else err
        with open(result_path) as f:
            text = f.read()
        if not text:
            return {"crash": status, "stderr": stderr}
        report = json.loads(text)
        report["stderr"] = stderr
        if status not in (0, 1):
            report["crash"] = "%s, after reporting" % status
        return report
    finally:
        os.unlink(result_path)


def failed(report: Dict[str, Any]) -> Dict[str, str]:
    """``{short test id: one-line message}`` of the failures and errors in a report."""
    return {name: entry.get("message", "")
            for name, entry in report.get("outcomes", {}).items()
            if entry["outcome"] in ("fail", "error", "unexpected success")}


def format_report(report: Dict[str, Any], verbose: bool = False) -> str:
    """A human summary: counts, then each failure or error with its one-line reason."""
    if "crash" in report:
        started = [line[6:] for line in report["stderr"].splitlines() if line.startswith("START ")]
        where = "after the tests" if "outcomes" in report else "during %s" % (
            started[-1] if started else "start-up")
        return "the child died (%s) %s\n%s" % (report["crash"], where, report["stderr"][-3000:])
    lines = ["CPython %s running %s" % (report["python"], report["file"])]
    lines += ["  " + note for note in report["notes"]]
    lines.append("ran %(run)d tests: %(failures)d failures, %(errors)d errors, "
                 "%(skipped)d skipped" % report)
    for name, entry in sorted(report["outcomes"].items()):
        if entry["outcome"] == "pass":
            continue
        lines.append("  %-18s %s" % (entry["outcome"].upper(), name))
        if entry.get("message"):
            lines.append("      " + entry["message"][:300])
        if verbose and entry.get("traceback"):
            lines.append("      " + entry["traceback"].rstrip().replace("\n", "\n      "))
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", help="the test file or a directory holding it "
                        "(default: $%s, else CPython 3.12 under pyenv)" % ENV_VAR)
    parser.add_argument("--python", help="interpreter to run the tests with "
                        "(default: this one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="tracebacks in the summary; -vv: unittest's verbose output too")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("-q", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.result, max(args.verbose, 0))
    try:
        path = find_test_file(args.file)
    except NotFound as e:
        print(e, file=sys.stderr)
        return 2
    report = run(path, args.python, 2 if args.verbose > 1 else 0, args.timeout)
    if args.verbose > 1 and "stderr" in report:
        print(report["stderr"], file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "stderr"}, indent=1))
    else:
        print(format_report(report, verbose=args.verbose > 0))
    if "crash" in report:
        return 2
    return 0 if not failed(report) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
