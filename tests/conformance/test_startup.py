"""A tool that starts before the program, and code compiled after it started.

Tools such as ``coverage run`` or a debugger launched with the program start
monitoring from ``sitecustomize`` (or an equivalent hook), before the main
script is even compiled: the script's module body, its functions and the
modules it imports must report events.  The same holds for ``python -c``,
and for ``exec``/``eval`` fetched before the tool started (a reference
kept by a library, ``functools.partial(exec)``) and given any source the
builtins accept (``str``, ``bytes``, ``bytearray``, ``memoryview``).

Each program runs in a fresh interpreter; on versions without
``sys.monitoring`` it calls ``lowimpact.install()`` first, then uses
``sys.monitoring`` as a tool written for 3.12 does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import lowimpact

from .helpers import Tool

# The tool, as a program sets it up.  It records the events of code whose
# file name the environment variable names (or "<string>"), and writes them
# as JSON to the file named by STARTUP_EVENTS_OUT when the program ends.
TOOL_SOURCE = '''
import sys
if sys.version_info < (3, 12):
    import lowimpact
    lowimpact.install()
import atexit, json, os

_mon = sys.monitoring
_ev = _mon.events
_log = []
_wanted = set(os.environ.get("STARTUP_EVENTS_FILES", "").split(os.pathsep)) | {"<string>"}

def _keep(code):
    return os.path.basename(code.co_filename) in _wanted or code.co_filename in _wanted

def _start(code, offset):
    if _keep(code):
        _log.append(["PY_START", code.co_name])

def _line(code, line):
    if _keep(code):
        _log.append(["LINE", code.co_name, line - code.co_firstlineno])

def _return(code, offset, value):
    if _keep(code):
        _log.append(["PY_RETURN", code.co_name, repr(value)])

def _report():
    _mon.set_events(3, 0)
    with open(os.environ["STARTUP_EVENTS_OUT"], "w") as out:
        json.dump(_log, out)

_mon.use_tool_id(3, "startup")
_mon.register_callback(3, _ev.PY_START, _start)
_mon.register_callback(3, _ev.LINE, _line)
_mon.register_callback(3, _ev.PY_RETURN, _return)
_mon.set_events(3, _ev.PY_START | _ev.LINE | _ev.PY_RETURN)
atexit.register(_report)
'''


def run_python(tmp_path: Path, args: list, files: tuple = (), site: bool = False) -> list:
    """Run a fresh interpreter; return the events the tool wrote."""
    out = tmp_path / "events.json"
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))]
    if site:
        site_dir = tmp_path / "site"
        site_dir.mkdir()
        (site_dir / "sitecustomize.py").write_text(TOOL_SOURCE)
        paths.insert(0, str(site_dir))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["STARTUP_EVENTS_OUT"] = str(out)
    env["STARTUP_EVENTS_FILES"] = os.pathsep.join(files)
    done = subprocess.run([sys.executable] + args, cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.exists(), "the tool did not report: " + done.stderr
    return [tuple(e) for e in json.loads(out.read_text())]


SCRIPT = '''\
import startup_helper
def f(x):
    y = x + 1
    return y
a = f(1)
b = startup_helper.g(a)
'''

HELPER = '''\
def g(x):
    return x * 2
'''


def test_tool_in_sitecustomize_sees_the_main_script(tmp_path: Path) -> None:
    (tmp_path / "main_script.py").write_text(SCRIPT)
    (tmp_path / "startup_helper.py").write_text(HELPER)
    events = run_python(tmp_path, ["main_script.py"], ("main_script.py", "startup_helper.py"), site=True)
    assert events == [
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("PY_RETURN", "<module>", "None"),
        ("LINE", "<module>", 1),
        ("LINE", "<module>", 4),
        ("PY_START", "f"),
        ("LINE", "f", 1),
        ("LINE", "f", 2),
        ("PY_RETURN", "f", "2"),
        ("LINE", "<module>", 5),
        ("PY_START", "g"),
        ("LINE", "g", 1),
        ("PY_RETURN", "g", "4"),
        ("PY_RETURN", "<module>", "None"),
    ]


def test_tool_in_sitecustomize_sees_python_c(tmp_path: Path) -> None:
    source = "def f():\n    return 1\nx = f()\n"
    events = run_python(tmp_path, ["-c", source], site=True)
    assert events == [
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("LINE", "<module>", 2),
        ("PY_START", "f"),
        ("LINE", "f", 1),
        ("PY_RETURN", "f", "1"),
        ("PY_RETURN", "<module>", "None"),
    ]


CAPTURING_PROGRAM = '''\
import builtins, functools, sys
kept_exec = exec
kept_eval = eval
partial_exec = functools.partial(exec)
{tool}
namespace = {{}}
kept_exec(compile("a = 1\\nb = 2\\n", "kept_exec_code", "exec"), namespace)
kept_exec("c = 3\\n", namespace)
assert kept_eval(compile("4 +\\\\\\n 5", "kept_eval_code", "eval")) == 9
partial_exec(compile("d = 6\\n", "partial_exec_code", "exec"), namespace)
assert (namespace["a"], namespace["c"], namespace["d"]) == (1, 3, 6)
'''


def test_exec_and_eval_fetched_before_the_tool_started(tmp_path: Path) -> None:
    program = CAPTURING_PROGRAM.format(tool=TOOL_SOURCE)
    (tmp_path / "capturing.py").write_text(program)
    events = run_python(tmp_path, ["capturing.py"], ("kept_exec_code", "kept_eval_code", "partial_exec_code"))
    assert events == [
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("LINE", "<module>", 1),
        ("PY_RETURN", "<module>", "None"),
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("PY_RETURN", "<module>", "None"),
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("PY_RETURN", "<module>", "9"),
        ("PY_START", "<module>"),
        ("LINE", "<module>", 0),
        ("PY_RETURN", "<module>", "None"),
    ]


BUILTINS_PROGRAM = '''\
import builtins
originals = {{name: getattr(builtins, name) for name in ("exec", "eval", "compile", "__build_class__", "__import__")}}
{tool}
class Made:
    pass
def changed():
    return [name for name, value in originals.items() if getattr(builtins, name) is not value]
assert not changed(), "replaced while events are on: %s" % changed()
sys.monitoring.set_events(3, 0)
assert not changed(), "replaced after events went off: %s" % changed()
sys.monitoring.set_events(3, sys.monitoring.events.PY_START | sys.monitoring.events.LINE)
'''


def test_builtins_stay_the_interpreters_own(tmp_path: Path) -> None:
    # The builtins as the interpreter made them, before anything was
    # imported, are still there while a tool has events on.
    (tmp_path / "builtins_kept.py").write_text(BUILTINS_PROGRAM.format(tool=TOOL_SOURCE))
    events = run_python(tmp_path, ["builtins_kept.py"], ("builtins_kept.py",))
    assert ("PY_START", "Made") in events


# --------------------------------------------------------------------------
# exec and eval of bytes-like sources (in this process)


SOURCE_TYPES = [str, bytes, bytearray, memoryview]


def as_source(kind: type, text: str) -> Any:
    return text if kind is str else kind(text.encode())


@pytest.mark.parametrize("kind", SOURCE_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("how", ["exec", "eval", "compile"])
def test_exec_eval_of_bytes_like_sources(M: Any, tool: Tool, kind: type, how: str) -> None:
    E = M.events
    log: list = []
    filename = "<bytes-like %s %s>" % (how, kind.__name__)

    def keep(code: Any) -> bool:
        # exec and eval name their code "<string>"; compile uses filename.
        return code.co_filename in ("<string>", filename) and code.co_name == "<module>"

    tool.register(E.PY_START, lambda code, offset: log.append(("PY_START",)) if keep(code) else None)
    tool.register(E.LINE, lambda code, line: log.append(("LINE", line)) if keep(code) else None)
    namespace: dict = {}
    tool.set_events(E.PY_START | E.LINE)
    try:
        if how == "exec":
            result = exec(as_source(kind, "x = 1\ny = x + 1\n"), namespace)
        elif how == "eval":
            result = eval(as_source(kind, "1 + \\\n 2"), namespace)
        else:
            exec(compile(as_source(kind, "x = 1\ny = x + 1\n"), filename, "exec"), namespace)
            result = None
    finally:
        tool.set_events(0)
    if how == "eval":
        assert result == 3
        assert log == [("PY_START",), ("LINE", 1)]
    else:
        assert result is None and namespace["y"] == 2
        assert log == [("PY_START",), ("LINE", 1), ("LINE", 2)]
