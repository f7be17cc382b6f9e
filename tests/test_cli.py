"""``python -m lowimpact run`` and ``python -m lowimpact trace``.

The command line runs in subprocesses on scripts written to tmp_path; a
program run under lowimpact must behave exactly as under plain ``python``,
which these tests use as the reference.  Trace lines are parsed into fields
and compared with lines of the test scripts, never with bytecode offsets
(they differ between versions); offsets are checked against :mod:`dis`.
"""

import dis
import io
import os
import re
import subprocess
import sys
import textwrap
from typing import List, NamedTuple, Optional

import pytest

from lowimpact._lines import co_lines
from lowimpact.tools.target import Scope
from lowimpact.tools.trace import (
    TOOL_IDS,
    TOOL_NAME,
    Tracer,
    available_events,
    parse_events,
    short_repr,
)


def write(directory, name, source):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def python(*args, cwd):
    """Run python with *args*; the reference for every run under lowimpact."""
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def lowimpact(*args, cwd):
    return python("-m", "lowimpact", *args, cwd=cwd)


class Event(NamedTuple):
    event: str
    file: str
    line: Optional[int]
    function: str
    offset: Optional[int]
    value: str
    source: str

    @property
    def short(self):
        """(event, line, function, value): what stays the same across versions."""
        return (self.event, self.line, self.function, self.value)


TRACE_LINE = re.compile(
    r"(?P<event>[A-Z_]+) +(?P<where>\S+) +(?P<function>\S+)"
    r"(?: +@(?P<offset>\d+)(?: (?P<value>.*?))?)? *\|(?: (?P<source>.*))?$"
)


def parse_trace(text: str) -> List[Event]:
    events = []
    for line in text.splitlines():
        match = TRACE_LINE.match(line)
        assert match, "not a trace line: %r" % line
        file, _, number = match["where"].partition(":")
        events.append(
            Event(
                match["event"],
                file,
                int(number) if number else None,
                match["function"],
                int(match["offset"]) if match["offset"] else None,
                match["value"] or "",
                match["source"] or "",
            )
        )
    return events


def trace(tmp_path, *args):
    """Trace with the events written to a file; returns (process, events)."""
    output = tmp_path / "trace.out"
    process = lowimpact("trace", "--output", output, *args, cwd=tmp_path)
    return process, parse_trace(output.read_text())


# -- run ---------------------------------------------------------------------

SHOW_STARTUP = """
    import sys
    import __main__
    print(sys.argv)
    print(__name__, __file__, __spec__ and __spec__.name, __package__, __cached__)
    print(sys.path[0])
    print(sys.modules["__main__"] is __main__, type(__loader__).__name__)
    sys.exit(int(sys.argv[1]))
"""


def test_run_script_like_python(tmp_path):
    write(tmp_path, "sub/show.py", SHOW_STARTUP)
    args = ("sub/show.py", "7", "-x", "--events", "LINE")
    expected = python(*args, cwd=tmp_path)
    got = lowimpact("run", *args, cwd=tmp_path)
    assert expected.returncode == 7
    assert (got.returncode, got.stdout, got.stderr) == (7, expected.stdout, expected.stderr)


def test_run_module_like_python(tmp_path):
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/show.py", SHOW_STARTUP)
    write(tmp_path, "pkg/__main__.py", "import sys; print('package main', sys.argv[1:])")
    expected = python("-m", "pkg.show", "3", "-m", cwd=tmp_path)
    got = lowimpact("run", "-m", "pkg.show", "3", "-m", cwd=tmp_path)
    assert expected.returncode == 3
    assert "pkg/show.py" in expected.stdout
    assert (got.returncode, got.stdout, got.stderr) == (3, expected.stdout, expected.stderr)

    got = lowimpact("run", "-m", "pkg", "a", cwd=tmp_path)
    assert (got.returncode, got.stdout) == (0, "package main ['a']\n")


def test_run_installs_monitoring(tmp_path):
    write(tmp_path, "uses.py", "import sys\nprint(sys.monitoring.get_tool(4))\n")
    got = lowimpact("run", "uses.py", cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (0, "None\n", "")


def test_run_directory_with_main(tmp_path):
    write(tmp_path, "app/__main__.py", "import sys; print('app', sys.argv[1:])")
    got = lowimpact("run", "app", "x", cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (0, "app ['x']\n", "")


ENDINGS = {
    "exception": """
        def inner():
            try:
                {}["key"]
            except KeyError as exc:
                raise ValueError("wrapped") from exc
        inner()
    """,
    "syntax_error": """
        x = 1
        def broken(:
    """,
    "exit_message": """
        import sys
        print("before")
        sys.exit("goodbye")
    """,
    "exit_none": "import sys; sys.exit()",
    "keyboard_interrupt": "raise KeyboardInterrupt",
    "excepthook": """
        import sys
        sys.excepthook = lambda t, v, tb: print("hook", t.__name__, tb.tb_frame.f_code.co_name)
        raise RuntimeError
    """,
}


@pytest.mark.parametrize("command", [["run"], ["trace", "--events", "ALL", "-o", "t.out"]])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_program_ends_as_under_python(tmp_path, command, ending):
    write(tmp_path, "prog.py", ENDINGS[ending])
    ends_alike("prog.py", command, tmp_path)


def ends_alike(script, command, cwd):
    """Runs *script* under python and under lowimpact *command*: the same exit
    status, output and errors; python's run."""
    expected = python(script, cwd=cwd)
    got = lowimpact(*command, script, cwd=cwd)
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.returncode,
        expected.stdout,
        expected.stderr,
    )
    return expected


# What python reads of a script's bytes; and compiling it sets up no `ast`
# types (the builtin compile() would: 2-3 ms before the program's first line).
SCRIPT_SOURCES = {
    "latin-1": b"# -*- coding: latin-1 -*-\nprint('caf\xe9')\n",
    "bom": b"\xef\xbb\xbfprint('bom')\n",
    "syntax_error": b"print('never')\nx = = 1\n",
}
SHOW_AST_TYPES = b"print([c.__module__ for c in object.__subclasses__() if c.__name__ == 'AST'])\n"


@pytest.fixture(scope="module")
def byte_compiled():
    """lowimpact's modules byte-compiled, as an installed package's are:
    importing one from source would compile it (and set up `ast`'s types)."""
    import compileall

    import lowimpact

    compileall.compile_dir(os.path.dirname(lowimpact.__file__), quiet=1)


@pytest.mark.parametrize(
    "command", [["run"], ["trace", "-o", "t.out"], ["cover", "run", "--data-file", "d"]]
)
@pytest.mark.parametrize("source", sorted(SCRIPT_SOURCES))
def test_script_compiled_as_python_compiles_it(tmp_path, byte_compiled, command, source):
    (tmp_path / "prog.py").write_bytes(SCRIPT_SOURCES[source] + SHOW_AST_TYPES)
    expected = ends_alike("prog.py", command, tmp_path)
    assert expected.returncode == (1 if source == "syntax_error" else 0)


def test_missing_script_or_module_as_python_says(tmp_path):
    for target in (["nothere.py"], ["-m", "nothere"], ["-m", "json.nothere"]):
        expected = python(*target, cwd=tmp_path)
        got = lowimpact("run", *target, cwd=tmp_path)
        assert expected.returncode in (1, 2)
        assert got.returncode == expected.returncode
        # "<executable>: message", the message alike.
        assert got.stderr.partition(": ")[2] == expected.stderr.partition(": ")[2]
        assert got.stderr.startswith(sys.executable)


def test_usage_errors(tmp_path):
    for args in ([], ["nosuchcommand"], ["run"], ["trace"]):
        got = lowimpact(*args, cwd=tmp_path)
        assert got.returncode == 2 and "usage:" in got.stderr, args
    got = lowimpact("trace", "-h", cwd=tmp_path)
    assert got.returncode == 0
    assert "--events" in got.stdout and "INSTRUCTION" in got.stdout


# -- trace: events and their fields -----------------------------------------

# Where 3.10's bytecode puts the lines of two events: it has no RESUME, so a
# code object starts at the first instruction of its body (a module's on
# line 1; 3.11+'s RESUME is on the ``def`` line, a module's on no line); and
# an ``except`` handler starts on the ``except`` line (3.11+'s PUSH_EXC_INFO
# is on no line).
RESUME = sys.version_info >= (3, 11)

FLOW = """
    def add(a, b):
        return a + b

    def gen():
        yield 1

    total = add(1, 2)
    for x in gen():
        pass
"""


def test_trace_default_events(tmp_path):
    write(tmp_path, "flow.py", FLOW)
    process, events = trace(tmp_path, "flow.py")
    assert process.returncode == 0 and process.stderr == ""
    assert {e.file for e in events} == {"flow.py"}
    # The line of the module's implicit `return None` once the loop ends:
    # the loop's (3.10+) or the last line (3.9, whose compiler gives it the
    # line of the code before it, the loop's body); a LINE where it starts
    # a line of its own, which 3.9's does not (the loop's exit jumps into
    # the middle of the body's line, where 3.9 reports none).
    module = compile((tmp_path / "flow.py").read_text(), "flow.py", "exec")
    end = list(co_lines(module))[-1][2]
    return_at = [i.offset for i in dis.get_instructions(module)][-2]
    return_starts_line = dict(dis.findlinestarts(module)).get(return_at) not in (None, 8)
    assert [e.short for e in events] == [
        ("PY_START", None if RESUME else 1, "<module>", ""),
        ("LINE", 1, "<module>", ""),
        ("LINE", 4, "<module>", ""),
        ("LINE", 7, "<module>", ""),
        ("PY_START", 1 if RESUME else 2, "add", ""),
        ("LINE", 2, "add", ""),
        ("PY_RETURN", 2, "add", "-> 3"),
        ("LINE", 8, "<module>", ""),
        ("PY_START", 4 if RESUME else 5, "gen", ""),
        ("LINE", 5, "gen", ""),
        ("PY_YIELD", 5, "gen", "-> 1"),
        ("LINE", 9, "<module>", ""),
        ("LINE", 8, "<module>", ""),
        ("PY_RESUME", 5, "gen", ""),
        ("PY_RETURN", 5, "gen", "-> None"),
    ] + ([("LINE", end, "<module>", "")] if return_starts_line else []) + [
        ("PY_RETURN", end, "<module>", "-> None"),
    ]
    lines = (tmp_path / "flow.py").read_text().splitlines()
    for e in events:
        assert e.source == (lines[e.line - 1] if e.line else "")
        assert (e.offset is None) == (e.event == "LINE")


CALLS = """
    def boom(x):
        raise ValueError("bad " + x)

    def main():
        try:
            boom("x")
        except ValueError:
            pass
        len([1, 2])

    main()
"""


def test_trace_call_and_exception_values(tmp_path):
    write(tmp_path, "calls.py", CALLS)
    _, events = trace(
        tmp_path, "--events", "call,c_return,raise,py_unwind,exception_handled", "calls.py"
    )
    assert [e.short for e in events] == [
        ("CALL", 11, "<module>", "main"),
        ("CALL", 6, "main", "boom arg0='x'"),
        ("CALL", 2, "boom", "ValueError arg0='bad x'"),
        ("C_RETURN", 2, "boom", "ValueError arg0='bad x'"),
        ("RAISE", 2, "boom", "ValueError: bad x"),
        ("PY_UNWIND", 2, "boom", "ValueError: bad x"),
        ("RAISE", 6, "main", "ValueError: bad x"),
        # The handler's first instruction belongs to no line (3.10: the except line).
        ("EXCEPTION_HANDLED", None if RESUME else 7, "main", "ValueError: bad x"),
        ("CALL", 9, "main", "len arg0=[1, 2]"),
        ("C_RETURN", 9, "main", "len arg0=[1, 2]"),
    ]


def test_c_events_bring_call(tmp_path):
    write(tmp_path, "calls.py", CALLS)
    _, events = trace(tmp_path, "--events", "C_RETURN", "calls.py")
    assert {e.event for e in events} == {"CALL", "C_RETURN"}
    assert ("C_RETURN", 9, "main", "len arg0=[1, 2]") in [e.short for e in events]


def test_offsets_are_those_dis_shows(tmp_path):
    path = write(
        tmp_path,
        "offsets.py",
        """
        def f(items):
            total = 0
            for x in items:
                if x:
                    total += len([x])
            try:
                {}[total]
            except KeyError:
                pass
            return total

        f([0, 1, 2])
        """,
    )
    _, events = trace(tmp_path, "--events", "ALL,INSTRUCTION", "offsets.py")
    codes = {"<module>": compile(path.read_text(), str(path), "exec")}
    codes.update((c.co_name, c) for c in codes["<module>"].co_consts if hasattr(c, "co_code"))
    by_offset = {
        name: {i.offset: i for i in dis.get_instructions(code)} for name, code in codes.items()
    }
    kinds = {e.event for e in events}
    assert {"INSTRUCTION", "JUMP", "BRANCH", "LINE", "CALL", "RAISE"} <= kinds, kinds
    for e in events:
        instructions = by_offset[e.function]
        if e.event in ("INSTRUCTION", "CALL", "PY_START", "PY_RETURN", "JUMP", "BRANCH"):
            assert e.offset in instructions, e
        if e.event == "INSTRUCTION":
            assert e.value.split()[0] == instructions[e.offset].opname
        if e.event in ("JUMP", "BRANCH"):
            assert int(e.value.partition("-> @")[2]) in instructions, e


# -- trace: options -----------------------------------------------------------


def test_events_option_is_case_insensitive(tmp_path):
    write(tmp_path, "flow.py", FLOW)
    _, events = trace(tmp_path, "--events", " line , Py_Return", "flow.py")
    assert {e.event for e in events} == {"LINE", "PY_RETURN"}


def test_parse_events():
    valid = available_events()
    assert parse_events("all") == [n for n in valid if n != "INSTRUCTION"]
    assert parse_events("ALL,instruction") == valid
    assert parse_events("line,PY_START,line") == ["PY_START", "LINE"]
    for bad in ("", " , ", "LIEN"):
        with pytest.raises(ValueError) as info:
            parse_events(bad)
        assert "ALL, " + ", ".join(valid) in str(info.value)


def test_events_option_errors(tmp_path):
    write(tmp_path, "flow.py", FLOW)
    got = lowimpact("trace", "--events", "line,lien", "flow.py", cwd=tmp_path)
    assert got.returncode == 2 and got.stdout == ""
    assert "unknown event 'lien' (did you mean LINE?)" in got.stderr
    assert "PY_START, PY_RESUME" in got.stderr and "usage:" in got.stderr
    got = lowimpact("trace", "--events", "", "flow.py", cwd=tmp_path)
    assert got.returncode == 2 and "no event names given" in got.stderr


def test_output_to_stderr_and_to_file(tmp_path):
    write(tmp_path, "talk.py", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n")
    expected = [
        ("PY_START", None if RESUME else 1, "<module>", ""),
        ("LINE", 1, "<module>", ""),
        ("LINE", 2, "<module>", ""),
        ("LINE", 3, "<module>", ""),
        ("PY_RETURN", 3, "<module>", "-> None"),
    ]
    got = lowimpact("trace", "talk.py", cwd=tmp_path)
    assert got.returncode == 0 and got.stdout == "out\n"
    lines = got.stderr.splitlines()
    # The program's own stderr output comes where it was written.
    assert lines[4] == "err"
    assert [e.short for e in parse_trace("\n".join(lines[:4] + lines[5:]))] == expected

    got = lowimpact("trace", "-o", "out.txt", "talk.py", cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (0, "out\n", "err\n")
    assert [e.short for e in parse_trace((tmp_path / "out.txt").read_text())] == expected


def test_output_flushed_when_the_program_fails(tmp_path):
    write(tmp_path, "fail.py", "import sys\nx = 1\nsys.exit(4)\n")
    process, events = trace(tmp_path, "fail.py")
    assert process.returncode == 4
    assert [e.short for e in events][-1] == ("LINE", 3, "<module>", "")


def test_output_file_error(tmp_path):
    write(tmp_path, "flow.py", FLOW)
    got = lowimpact("trace", "-o", tmp_path / "no" / "dir", "flow.py", cwd=tmp_path)
    assert got.returncode == 2 and "cannot write" in got.stderr


# -- trace: which code ----------------------------------------------------------

LIBRARY_USER = """
    import json, os
    from lib import helper
    helper.double(json.dumps([os.environ.get("LOWIMPACT_UNSET")]))
"""


def test_default_traces_only_the_programs_directory(tmp_path):
    write(tmp_path, "proj/main.py", LIBRARY_USER)
    write(tmp_path, "proj/lib/helper.py", "def double(s):\n    return s * 2\n")
    # All events: untraced code also raises, catches and calls C functions,
    # events that must be filtered without returning DISABLE.
    process, events = trace(tmp_path, "--events", "ALL", "proj/main.py")
    assert (process.returncode, process.stderr) == (0, "")
    assert {e.file for e in events} == {"main.py", "lib/helper.py"}
    assert ("PY_RETURN", 2, "double", "-> '[null][null]'") in [e.short for e in events]

    process, events = trace(tmp_path, "--events", "ALL", "--all-code", "proj/main.py")
    assert (process.returncode, process.stderr) == (0, "")
    files = {e.file for e in events}
    # Frozen modules are named after their source file.
    assert {"main.py", "lib/helper.py", "json/__init__.py", "json/encoder.py", "os.py"} <= files
    assert "RAISE" in {e.event for e in events if e.file == "os.py"}
    # The machinery that runs the program is never traced.
    assert not [f for f in files if "lowimpact" in f or "runpy" in f], files
    assert events[0].short == ("PY_START", None if RESUME else 1, "<module>", "")
    assert events[-1].short == ("PY_RETURN", 3, "<module>", "-> None")


def test_module_mode_traces_its_package(tmp_path):
    write(tmp_path, "pkg/__init__.py", "X = 1\n")
    write(tmp_path, "pkg/run.py", "import json\nprint(json.dumps(2))\n")
    process, events = trace(tmp_path, "-m", "pkg.run")
    assert (process.returncode, process.stdout) == (0, "2\n")
    # Named relative to the package's directory, the tree that is traced.
    assert {e.file for e in events} == {"__init__.py", "run.py"}
    assert ("LINE", 1, "<module>", "") in [e.short for e in events]


# -- trace: tool id and robustness ----------------------------------------------

SHOW_TOOLS = """
    import atexit
    from lowimpact import monitoring as M
    tools = lambda: [M.get_tool(i) for i in range(6)]
    print(tools())
    atexit.register(lambda: print(tools(), M.get_events(3), M.get_events(4)))
"""


def test_tool_id_used_and_freed(tmp_path):
    write(tmp_path, "tools.py", SHOW_TOOLS)
    got = lowimpact("trace", "-o", "t.out", "tools.py", cwd=tmp_path)
    during, after = got.stdout.splitlines()
    assert during == repr([None] * TOOL_IDS[0] + [TOOL_NAME] + [None] * (5 - TOOL_IDS[0]))
    assert after == repr([None] * 6) + " 0 0"


def test_tool_id_falls_back_when_taken(tmp_path):
    write(tmp_path, "tools.py", SHOW_TOOLS)
    driver = (
        "import sys\n"
        "from lowimpact import monitoring as M\n"
        "M.use_tool_id(%d, 'other')\n"
        "from lowimpact._cli import main\n"
        "sys.exit(main(['trace', '-o', 't.out', 'tools.py']))\n" % TOOL_IDS[0]
    )
    got = python("-c", driver, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    during, after = got.stdout.splitlines()
    expected = [None] * 6
    expected[TOOL_IDS[0]] = "other"
    assert after.startswith(repr(expected))
    expected[TOOL_IDS[1]] = TOOL_NAME
    assert during == repr(expected)


def test_closed_stderr_does_not_disturb_the_program(tmp_path):
    write(
        tmp_path,
        "closer.py",
        """
        import sys
        def f(n):
            return n + 1
        sys.stderr.close()
        print(f(1))
        """,
    )
    got = lowimpact("trace", "closer.py", cwd=tmp_path)
    assert (got.returncode, got.stdout) == (0, "2\n")
    assert "f" not in [e.function for e in parse_trace(got.stderr)]


def test_trace_stays_on_the_original_stderr(tmp_path):
    write(
        tmp_path,
        "redirect.py",
        """
        import contextlib, io
        def f():
            return 1
        with contextlib.redirect_stderr(io.StringIO()):
            f()
        """,
    )
    got = lowimpact("trace", "redirect.py", cwd=tmp_path)
    assert got.returncode == 0
    assert ("PY_RETURN", 3, "f", "-> 1") in [e.short for e in parse_trace(got.stderr)]


# -- the library side -------------------------------------------------------------


def test_tracer_in_process(tmp_path):
    path = write(tmp_path, "mod.py", "def f(x):\n    return [x] * 2\n")
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    out = io.StringIO()
    tracer = Tracer(out, events=["PY_RETURN"], scope=Scope(str(tmp_path)))
    with tracer:
        assert tracer.tool_id in TOOL_IDS
        namespace["f"](3)
    assert tracer.tool_id is None
    assert [e.short for e in parse_trace(out.getvalue())] == [
        ("PY_RETURN", 2, "f", "-> [3, 3]")
    ]


def test_short_repr_never_raises():
    class Bad:
        def __repr__(self):
            raise RuntimeError

    class Lines:
        def __repr__(self):
            return "a\nb"

    assert short_repr(Bad()).startswith("<")
    assert short_repr(Lines()) == "a\\nb"
    assert short_repr(10**5000).startswith("<int")
    assert len(short_repr("x" * 1000)) <= 40
    assert short_repr([Bad()]).startswith("[<")
