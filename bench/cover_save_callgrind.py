"""What saving costs in `lowimpact cover run --branch`, in instructions (callgrind).

    python bench/cover_save_callgrind.py [--python PY ...] [--runs NAME ...] [--keep DIR]

Runs `cover run --branch` under valgrind's callgrind with
--dump-before=getppid and an os.getppid() just before and just after each
`Measurement.save()`, and prints, per run, the program's whole process and
the saves alone, in whichever process they run (millions of instructions).  The runs (PYTHONHASHSEED=0, lowimpact's
modules byte-compiled):

  test_json       -m unittest test.test_json.test_decode test.test_json.test_dump
                  --source=json,test.test_json (bench/cover_callgrind.py's)
  objects_branch  objects.py 150000 --source . in bench/cover_programs
  parser_branch   parser.py 4000 --source . (bench/cover_fixed_cost.py's)

--keep DIR keeps each run's data file and sub-line file there (DIR/NAME and
DIR/NAME-subline.json), to compare what two checkouts write
(bench/cover_save_compare.py).  --annotate N prints the N costliest
functions of the saves (callgrind_annotate, inclusive).
PY must be the interpreter's real executable (callgrind does not follow exec).
"""

from __future__ import annotations

import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(BENCH), "src")
PROGRAMS = os.path.join(BENCH, "cover_programs")

RUNS = {
    "test_json": ["--source", "json,test.test_json", "-m", "unittest", "-q",
                  "test.test_json.test_decode", "test.test_json.test_dump"],
    "objects_branch": ["--source", ".", "objects.py", "150000"],
    "parser_branch": ["--source", ".", "parser.py", "4000"],
}

SAVE = "save"


def child(labels_file: str, argv: list) -> int:
    """`cover run` with an os.getppid() around each save (under callgrind),
    each noted in *labels_file* as "PID before" and "PID save": the dump
    callgrind starts at an os.getppid() holds what ran since the one before
    in that process, whichever process saves (cover run's own, or one it
    forks)."""
    from lowimpact.tools.cover import cli, measure

    real_save = measure.Measurement.save

    def note(label: str) -> None:
        with open(labels_file, "a") as file:
            file.write("%d %s\n" % (os.getpid(), label))
        os.getppid()

    def save(self):
        note("before")
        try:
            real_save(self)
        finally:
            note("save")

    measure.Measurement.save = save
    return cli.main(["run", *argv])


def saving(work, labels) -> "tuple[int, int, list]":
    """(the instructions of the process that ran the program, of the saves,
    the save dumps) from the callgrind outputs in *work* (callgrind.out.PID
    and its dumps callgrind.out.PID.N)."""
    from cover_callgrind import total

    noted: dict = {}
    for line in labels.read_text().splitlines() if labels.exists() else ():
        pid, label = line.split(" ", 1)
        noted.setdefault(int(pid), []).append(label)
    outputs: dict = {}
    for path in work.glob("callgrind.out.*"):
        pid, _, dump = path.name[len("callgrind.out."):].partition(".")
        outputs.setdefault(int(pid), {})[int(dump) if dump else None] = path
    program = min(outputs)   # (forks come later)
    whole = sum(total(path) for path in outputs[program].values())
    saved, saves = 0, []
    for pid, dumps in outputs.items():
        # Dump N ends at the N-th os.getppid(): the N-th label.
        for number, label in enumerate(noted.get(pid, ()), 1):
            if label == SAVE and number in dumps:
                saved += total(dumps[number])
                saves.append(dumps[number])
    return whole, saved, saves


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2], sys.argv[4:]))
    import argparse
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=[os.path.realpath(sys.executable)])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--keep", help="keep the data files in this directory")
    parser.add_argument("--annotate", type=int, default=0)
    options = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, BENCH]), PYTHONHASHSEED="0")
    env.pop("COVERAGE_CORE", None)
    for python in options.python:
        subprocess.run([python, "-m", "compileall", "-q", os.path.join(SRC, "lowimpact")],
                       check=True, stdout=subprocess.DEVNULL)
        rows = []
        for name in options.runs:
            with tempfile.TemporaryDirectory(prefix="lowimpact-cover-save") as tmp:
                work = Path(tmp)
                labels = work / "labels"
                subprocess.run(["valgrind", "--tool=callgrind",
                                "--callgrind-out-file=%s" % (work / "callgrind.out.%p"),
                                "--dump-before=getppid", python, "-m", "cover_save_callgrind",
                                "--child", str(labels), "--", "--data-file", str(work / name),
                                "--branch", *RUNS[name]],
                               cwd=work if name == "test_json" else PROGRAMS, env=env,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                whole, saved, saves = saving(work, labels)
                rows.append((name, whole / 1e6, saved / 1e6))
                for dump in saves if options.annotate else ():
                    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(dump)],
                                          capture_output=True, text=True).stdout
                    lines = [line for line in text.splitlines() if "(" in line and ":" in line]
                    print("\n".join(lines[:options.annotate]))
                if options.keep:
                    keep = Path(options.keep)
                    keep.mkdir(parents=True, exist_ok=True)
                    for written in work.glob(name + "*"):
                        shutil.copy(written, keep / written.name)
        print("%s: cover run --branch (millions of instructions: the program's process, "
              "the saves, in whichever process)\n" % python)
        print("| run | program's process | save |\n|---|---|---|")
        for name, whole, saved in rows:
            print("| %s | %.1f | %.1f |" % (name, whole, saved))
        print()


if __name__ == "__main__":
    main()
