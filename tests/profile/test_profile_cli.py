"""``python -m lowimpact profile``: cProfile's command line, and the formats."""

from __future__ import annotations

import json
import pstats
import subprocess
import xml.etree.ElementTree as ET

import pytest

from profile_helpers import PROGRAMS, env, load, needs_engine, python

RECURSIVE = str(PROGRAMS / "recursive.py")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(
        "import sys\n"
        "def work(n):\n"
        "    return sum(i * i for i in range(n))\n"
        "print('args', sys.argv[1:], work(100))\n"
        "sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)\n")
    return path


@needs_engine
def test_prints_stats_sorted_like_cprofile(script, tmp_path):
    proc = python(["-m", "lowimpact", "profile", "-s", "ncalls", str(script)], tmp_path)
    oracle = python(["-m", "cProfile", "-s", "ncalls", str(script)], tmp_path)
    assert "args [] 328350" in proc.stdout

    def rows(out):
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        return [line.split()[0] + " " + line.split()[-1] for line in lines[start + 1:]
                if line.strip() and "disable" not in line]

    ours = rows(proc.stdout)
    assert sorted(ours) == sorted(rows(oracle.stdout))
    calls = [int(row.split()[0].split("/")[-1]) for row in ours]
    assert calls == sorted(calls, reverse=True) and calls[0] == 101
    assert "Ordered by: call count" in proc.stdout


@needs_engine
def test_outfile_is_a_pstats_file(script, tmp_path):
    out = tmp_path / "out.prof"
    python(["-m", "lowimpact", "profile", "-o", str(out), str(script)], tmp_path)
    stats = pstats.Stats(str(out))
    names = {key[2] for key in stats.stats}
    assert {"work", "<genexpr>", "<module>", "<built-in method builtins.sum>"} <= names
    assert stats.total_calls == sum(v[1] for v in load(out).values())


@needs_engine
def test_script_arguments_and_exit_status(script, tmp_path):
    out = tmp_path / "out.prof"
    proc = python(["-m", "lowimpact", "profile", "-o", str(out), str(script), "3", "-x"],
                  tmp_path, check=False)
    assert proc.returncode == 3
    assert "args ['3', '-x'] 328350" in proc.stdout
    # The profile is written all the same.
    assert any(key[2] == "work" for key in load(out))


@needs_engine
def test_module(tmp_path):
    (tmp_path / "pkgmod.py").write_text(
        "def f():\n    return 1\n"
        "if __name__ == '__main__':\n    [f() for _ in range(7)]\n")
    out = tmp_path / "out.prof"
    python(["-m", "lowimpact", "profile", "-o", str(out), "-m", "pkgmod"], tmp_path)
    f = [v for k, v in load(out).items() if k[2] == "f"]
    assert [v[:2] for v in f] == [(7, 7)]


@needs_engine
def test_missing_script(tmp_path):
    proc = python(["-m", "lowimpact", "profile", str(tmp_path / "nope.py")], tmp_path,
                  check=False)
    assert proc.returncode == 2
    assert "can't open file" in proc.stderr and "nope.py" in proc.stderr
    assert "Traceback" not in proc.stderr


@needs_engine
def test_missing_module(tmp_path):
    proc = python(["-m", "lowimpact", "profile", "-m", "no_such_module_xyz"], tmp_path,
                  check=False)
    assert proc.returncode == 1
    assert "No module named no_such_module_xyz" in proc.stderr


@needs_engine
@pytest.mark.parametrize("args, message", [
    (["-s", "bogus"], "invalid choice: 'bogus'"),
    (["--format", "html"], "invalid choice: 'html'"),
    (["--clock", "sundial"], "invalid choice: 'sundial'"),
    (["--limit", "0"], "--limit must be positive"),
    ([], "the following arguments are required"),
])
def test_bad_options(args, message, tmp_path):
    target = [] if not args else [RECURSIVE]
    proc = python(["-m", "lowimpact", "profile", *args, *target], tmp_path, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_sort_keys_are_pstats():
    # The command line lists them without importing pstats (start-up cost).
    from lowimpact import _cli

    assert sorted(_cli._sort_keys()) == sorted(pstats.Stats.sort_arg_dict_default)


@needs_engine
def test_writing_a_pstats_file_imports_little(tmp_path):
    # What the command line imports is start-up every profiled run pays:
    # pstats (printing only), typing and pkgutil are left out.  The baseline
    # is a run through runpy as `-m lowimpact` is: 3.9's runpy imports typing
    # and pkgutil itself (importlib.util, pkgutil).
    probe = tmp_path / "probe.py"
    probe.write_text("import sys\n"
                     "print(sorted(m for m in ('pstats', 'typing', 'pkgutil', 'dataclasses')\n"
                     "             if m in sys.modules))\n")
    plain = python(["-m", "probe"], tmp_path).stdout
    proc = python(["-m", "lowimpact", "profile", "-o", str(tmp_path / "out.prof"), str(probe)],
                  tmp_path)
    assert proc.stdout == plain


@needs_engine
def test_unwritable_output(tmp_path):
    proc = python(["-m", "lowimpact", "profile", "-o", str(tmp_path / "no" / "dir.prof"),
                   RECURSIVE], tmp_path, check=False)
    assert proc.returncode == 1
    assert "cannot write" in proc.stderr


@needs_engine
def test_speedscope_collapsed_and_svg(tmp_path):
    outs = {}
    for fmt, name in (("speedscope", "p.json"), ("collapsed", "p.txt"), ("svg", "p.svg")):
        outs[fmt] = tmp_path / name
        python(["-m", "lowimpact", "profile", "--format", fmt, "-o", str(outs[fmt]), RECURSIVE],
               tmp_path)
    doc = json.loads(outs["speedscope"].read_text())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    profile = doc["profiles"][0]
    assert profile["type"] == "evented"
    frames = doc["shared"]["frames"]
    opened = [frames[e["frame"]]["name"] for e in profile["events"] if e["type"] == "O"]
    closed = [e for e in profile["events"] if e["type"] == "C"]
    assert len(opened) == len(closed) and "fib" in opened
    times = [e["at"] for e in profile["events"]]
    assert times == sorted(times)
    # Collapsed stacks: fib under main under <module>, as many levels deep as fib(15) goes.
    stacks = [line.rsplit(" ", 1)[0].split(";") for line in outs["collapsed"].read_text().splitlines()]
    fib_stacks = [s for s in stacks if s[-1].startswith("fib (")]
    assert max(sum(f.startswith("fib (") for f in s) for s in fib_stacks) == 15
    assert all(s[0] == "<built-in method builtins.exec>" and s[1].startswith("<module> (")
               for s in fib_stacks)
    root = ET.parse(outs["svg"]).getroot()
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("fib (%s:" % RECURSIVE) for t in titles)


@needs_engine
def test_cpu_clock(tmp_path):
    out = tmp_path / "out.prof"
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\ndef nap():\n    time.sleep(0.2)\nnap()\n")
    python(["-m", "lowimpact", "profile", "--clock", "cpu", "-o", str(out), str(sleeper)],
           tmp_path)
    python(["-m", "lowimpact", "profile", "-o", str(tmp_path / "wall.prof"), str(sleeper)],
           tmp_path)
    nap_cpu = [v for k, v in load(out).items() if k[2] == "nap"][0]
    nap_wall = [v for k, v in load(tmp_path / "wall.prof").items() if k[2] == "nap"][0]
    assert nap_wall[3] >= 0.2
    assert nap_cpu[3] < 0.1   # sleeping takes no CPU time
