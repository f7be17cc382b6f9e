"""What saving costs in `lowimpact cover run --branch`, in instructions (callgrind).

    python bench/cover_save_callgrind.py [--python PY ...] [--runs NAME ...] [--keep DIR]

Runs `cover run --branch` under valgrind's callgrind with
--dump-before=getppid and an os.getppid() just before and just after each
`Measurement.save()`, and prints, per run, the whole process and the saves
alone (millions of instructions).  The runs (PYTHONHASHSEED=0, lowimpact's
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
    """`cover run` with an os.getppid() around each save (under callgrind)."""
    from lowimpact.tools.cover import cli, measure

    labels = []
    real_save = measure.Measurement.save

    def save(self):
        labels.append("before")
        os.getppid()
        try:
            real_save(self)
        finally:
            labels.append(SAVE)
            os.getppid()

    measure.Measurement.save = save
    try:
        return cli.main(["run", *argv])
    finally:
        with open(labels_file, "w") as file:
            file.write("\n".join(labels + ["after"]))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2], sys.argv[4:]))
    import argparse
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from cover_callgrind import total
    from cover_fixed_cost import callgrind

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=[os.path.realpath(sys.executable)])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--keep", help="keep the data files in this directory")
    parser.add_argument("--annotate", type=int, default=0)
    options = parser.parse_args()
    for python in options.python:
        subprocess.run([python, "-m", "compileall", "-q", os.path.join(SRC, "lowimpact")],
                       check=True, stdout=subprocess.DEVNULL)
        rows = []
        for name in options.runs:
            with tempfile.TemporaryDirectory(prefix="lowimpact-cover-save") as tmp:
                work = Path(tmp)
                out = work / "callgrind.out"
                labels = work / "labels"
                callgrind(python, ["-m", "cover_save_callgrind", "--child", str(labels), "--",
                                   "--data-file", str(work / name), "--branch", *RUNS[name]],
                          out, work if name == "test_json" else Path(PROGRAMS),
                          "--dump-before=getppid")
                dumps = sorted(work.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
                dumps.append(out)
                whole = saving = 0
                saves = []
                for label, dump in zip(labels.read_text().splitlines(), dumps):
                    count = total(dump)
                    whole += count
                    if label == SAVE:
                        saving += count
                        saves.append(dump)
                rows.append((name, whole / 1e6, saving / 1e6))
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
        print("%s: cover run --branch (millions of instructions)\n" % python)
        print("| run | whole process | save |\n|---|---|---|")
        for name, whole, saving in rows:
            print("| %s | %.1f | %.1f |" % (name, whole, saving))
        print()


if __name__ == "__main__":
    main()
