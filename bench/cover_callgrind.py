"""Where `lowimpact cover run` spends its instructions (valgrind's callgrind).

    python bench/cover_callgrind.py [--python PY] [--suite MODULE ...]

Counts instructions of whole processes, which a loaded machine does not
disturb as it disturbs timings: the program's process (the ratio to plain is
its), and apart the coverage.py process `cover run` forks beside it, which
reads the configuration while the program runs and writes the data when it
has ended (docs/COVER.md, "coverage.py beside the program"):

  plain        python -m unittest SUITE
  nothing      cover run --include=/nonexistent/*: start-up, coverage.py's
               configuration, global PY_START, saving; nothing measured
  lines        cover run --source=...
  branches     cover run --branch --source=...
  empty        cover run of an empty script (fixed costs)
  python       python of an empty script
  import       python -c "import coverage" (what coverage run pays too)

and, for the measured runs, the instructions spent inside the cover core's
callbacks and in the C API calls they make (inclusive), read from
callgrind's call graph.  lowimpact's modules in src/ are byte-compiled first,
as an installed package's are (with PYTHONDONTWRITEBYTECODE set, each run
would compile them).  PY must be the interpreter's real executable (not
a pyenv shim: callgrind does not follow exec).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

SRC = Path(__file__).resolve().parent.parent / "src"

#: C functions whose inclusive cost is shown (the cover core and what it calls).
#: (Not set_local_events: callgrind's inclusive view charges it with the
#: recursive calls beneath the callback that calls it; measure it alone with
#: --toggle-collect=set_local_events.)
FUNCTIONS = ("on_py_start", "on_once", "on_branch", "collector_start", "trace_name")


def callgrind(python: str, args: List[str], out: Path, cwd: Path) -> None:
    """Run python with *args* under callgrind: the output of the process
    started is *out*, that of a process it forks (`cover run`'s coverage.py
    process, docs/COVER.md) *out* with ".helper" after it."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("COVERAGE_CORE", None)
    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s.%%p" % out,
                    python, *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    name_by_pid(out)


def name_by_pid(out: Path) -> None:
    """Name the outputs of callgrind's --callgrind-out-file=OUT.%p: OUT for
    the first process (the lowest pid: forks come later), OUT.helper for the
    last (`cover run` forks its helper through a process that ends at once:
    OUT.middle), OUT.N for a dump N of the first (--dump-before)."""
    pids = sorted({int(path.name[len(out.name) + 1:].split(".")[0])
                   for path in out.parent.glob(out.name + ".*")
                   if path.name[len(out.name) + 1:].split(".")[0].isdigit()})
    if len(pids) > 3:
        raise SystemExit("%s: more than three processes under callgrind" % out)
    for index, pid in enumerate(pids):
        for path in out.parent.glob("%s.%d*" % (out.name, pid)):
            dump = path.name[len("%s.%d" % (out.name, pid)):]
            if index == 0:
                path.rename(out.parent / (out.name + dump))
            elif index == len(pids) - 1:
                path.rename(out.parent / (out.name + dump + ".helper"))
            else:
                path.rename(out.parent / (out.name + dump + ".middle"))


def total(out: Path) -> int:
    """Instructions in callgrind output *out* (0: none)."""
    if not out.exists():
        return 0
    match = re.search(r"^summary: (\d+)", out.read_text(), re.M)
    return int(match.group(1)) if match else 0


def helper_total(out: Path) -> int:
    """Instructions of the process *out*'s process forked (its helper), its
    own: a forked process's count under callgrind starts from its parent's
    at the fork, which the process between them (which only forks again)
    shows."""
    helper = total(out.parent / (out.name + ".helper"))
    return helper - total(out.parent / (out.name + ".middle")) if helper else 0


def inclusive(out: Path) -> Dict[str, int]:
    """Inclusive instructions of FUNCTIONS (callgrind_annotate's view)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
                          capture_output=True, text=True).stdout
    found: Dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+):(\w+)(?: \[|$)", line)
        if not match or match.group(3) not in FUNCTIONS:
            continue
        # The cover core's functions, and the C API's entry (not the engine's
        # function of the same name, which it calls).
        if not match.group(2).endswith(("cover/cover.c", "capi/capi.c")):
            continue
        name = match.group(3)
        found[name] = max(found.get(name, 0), int(match.group(1).replace(",", "")))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=os.path.realpath(sys.executable))
    parser.add_argument("--suite", nargs="+", default=["test.test_json.test_decode",
                                                       "test.test_json.test_dump"])
    parser.add_argument("--source", default="json,test.test_json")
    options = parser.parse_args()
    unittest = ["-m", "unittest", "-q", *options.suite]
    subprocess.run([options.python, "-m", "compileall", "-q", str(SRC / "lowimpact")], check=True,
                   stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="lowimpact-cover-callgrind") as tmp:
        work = Path(tmp)
        (work / "empty.py").write_text("")
        cover = ["-m", "lowimpact", "cover", "run", "--data-file", str(work / "data")]
        runs = {
            "plain": unittest,
            "nothing": [*cover, "--include=/nonexistent/*", *unittest],
            "lines": [*cover, "--source", options.source, *unittest],
            "branches": [*cover, "--branch", "--source", options.source, *unittest],
            "empty": [*cover, "--source", options.source, "empty.py"],
            "python": ["empty.py"],
            "import": ["-c", "import coverage"],
        }
        counts = {}
        for name, args in runs.items():
            out = work / ("%s.out" % name)
            callgrind(options.python, args, out, work)
            counts[name] = (total(out), helper_total(out),
                            inclusive(out) if name in ("lines", "branches") else {})
        plain = counts["plain"][0]
        started = counts["empty"][1]
        print("%s, %s (instructions, millions; the program's process, the coverage.py "
              "process beside it, and the two after one another as the run waits for them: "
              "the program's process, then the helper's count less its count for the empty "
              "script, which is its start-up while the program runs)\n"
              % (options.python, " ".join(options.suite)))
        print("| run | program's process | over plain | beside it | waited for | over plain | "
              + " | ".join(FUNCTIONS) + " |")
        print("|---|---|---|---|---|---|" + "---|" * len(FUNCTIONS))
        for name, (count, helper, functions) in counts.items():
            cells = ["%.0f" % (functions[f] / 1e6) if f in functions else "" for f in FUNCTIONS]
            measured = name in ("nothing", "lines", "branches")
            waited = count + max(helper - started, 0)
            print("| %s | %.0f | %s | %s | %s | %s | %s |" % (
                name, count / 1e6, "%.3fx" % (count / plain) if measured else "",
                "%.0f" % (helper / 1e6) if helper else "",
                "%.0f" % (waited / 1e6) if measured else "",
                "%.3fx" % (waited / plain) if measured else "", " | ".join(cells)))


if __name__ == "__main__":
    main()
