"""The hook's ways in (``python -m lowimpact debugpy``, ``LOWIMPACT_DEBUGPY``
through the ``.pth`` file) and its fall-back to debugpy's own behaviour
when pydevd is not what it knows.

pydevd here is either the real one (the ``.pth`` test, a DAP session) or a
stand-in with the layout and flag of pydevd 1.8's ``pydevd_constants``,
changed the way a new release could change it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import types
import venv
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from .dap import LaunchSession, Session, pythonpath
from .test_sessions import AT, ENGINE, PROGRAM, lowimpact_path

REPO = Path(__file__).resolve().parents[2]
PTH = REPO / "src" / "lowimpact-debugpy.pth"
FALLBACK = "debugpy runs without lowimpact"

# pydevd_constants as pydevd 1.8 has it, cut to what the hook touches.
CONSTANTS = """\
import os
import sys
IS_PY312_OR_GREATER = sys.version_info >= (3, 12)
IGNORE_BASENAMES_STARTING_WITH = ("<frozen ",)
PYDEVD_USE_SYS_MONITORING = IS_PY312_OR_GREATER and hasattr(sys, "monitoring")
def NO_FTRACE(frame, event, arg):
    frame.f_trace = None
"""


# pydevd's pure-Python tracer, cut to the method that reads co_lines().
TRACER = """\
class FuncCodeInfo:
    def get_line_of_offset(self, offset):
        for start, end, line in self.code_obj.co_lines():
            if start <= offset <= end:
                return line
        return -1
"""


def fake_pydevd(root: Path, constants: str = CONSTANTS, tracer: bool = True) -> Path:
    (root / "_pydevd_bundle").mkdir(parents=True)
    (root / "_pydevd_bundle" / "__init__.py").write_text("")
    (root / "_pydevd_bundle" / "pydevd_constants.py").write_text(constants)
    if tracer:
        (root / "_pydevd_sys_monitoring").mkdir()
        (root / "_pydevd_sys_monitoring" / "_pydevd_sys_monitoring.py").write_text("")
    return root


def load_constants(root: Path, env: Optional[Dict[str, str]] = None,
                   before: str = "", after: str = "",
                   python: str = sys.executable) -> subprocess.CompletedProcess:
    """Enable the hook in a fresh python, import the stand-in's constants and
    print the flag, what NO_FTRACE does and what sys.monitoring is."""
    code = textwrap.dedent("""\
        import sys
        %s
        from lowimpact.tools.debugpy import enable
        print(enable())
        from _pydevd_bundle import pydevd_constants as c
        print(getattr(c, "PYDEVD_USE_SYS_MONITORING", None))
        print(c.NO_FTRACE.__module__)
        print(getattr(getattr(sys, "monitoring", None), "__name__", None))
        %s
        """) % (before, after)
    environment = pythonpath(str(root), lowimpact_path())
    environment.pop("PYDEVD_USE_SYS_MONITORING", None)
    environment.update(env or {})
    return subprocess.run([python, "-c", code], env=environment, capture_output=True,
                          text=True, timeout=60)


def lines(result: subprocess.CompletedProcess) -> List[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.skipif(not ENGINE, reason="the hook changes pydevd only on 3.9, 3.10 and 3.11, "
                    "where the engine is and pydevd's flag is off")
class TestFlag:
    def test_known_pydevd_gets_monitoring(self, tmp_path: Path) -> None:
        result = load_constants(fake_pydevd(tmp_path))
        assert lines(result) == ["True", "True", "lowimpact.tools.debugpy",
                                 "lowimpact.monitoring"]
        assert result.stderr == ""

    def test_no_flag_falls_back(self, tmp_path: Path) -> None:
        changed = CONSTANTS.replace("PYDEVD_USE_SYS_MONITORING", "USE_MONITORING")
        result = load_constants(fake_pydevd(tmp_path, changed))
        assert lines(result) == ["True", "None", "_pydevd_bundle.pydevd_constants", "None"]
        assert "has no PYDEVD_USE_SYS_MONITORING" in result.stderr
        assert FALLBACK in result.stderr

    def test_no_tracer_falls_back(self, tmp_path: Path) -> None:
        result = load_constants(fake_pydevd(tmp_path, tracer=False))
        # pydevd's own choice, its own NO_FTRACE, no sys.monitoring installed.
        assert lines(result) == ["True", "False", "_pydevd_bundle.pydevd_constants", "None"]
        assert "no pure-Python sys.monitoring tracer" in result.stderr
        assert FALLBACK in result.stderr

    def test_pydevd_switch_off_wins(self, tmp_path: Path) -> None:
        result = load_constants(fake_pydevd(tmp_path), {"PYDEVD_USE_SYS_MONITORING": "0"})
        assert lines(result) == ["False", "False", "_pydevd_bundle.pydevd_constants", "None"]
        assert result.stderr == ""

    @pytest.mark.skipif(hasattr(types.CodeType, "co_lines"),
                        reason="the tracer is changed only where code has no co_lines() (3.9)")
    @pytest.mark.parametrize("has_method", [True, False])
    def test_tracer_gets_co_lines(self, tmp_path: Path, has_method: bool) -> None:
        root = fake_pydevd(tmp_path)
        if has_method:
            (root / "_pydevd_sys_monitoring" / "_pydevd_sys_monitoring.py").write_text(TRACER)
        result = load_constants(root, after=textwrap.dedent("""\
            from _pydevd_sys_monitoring import _pydevd_sys_monitoring as t
            def f(x):
                y = x
                return y
            info = getattr(t, "FuncCodeInfo", None)
            if info is not None:
                i = info(); i.code_obj = f.__code__
                lines = [i.get_line_of_offset(o) for o in (0, 6, 100)]
                print([n - f.__code__.co_firstlineno if n > 0 else n for n in lines])
            """))
        if has_method:
            # LOAD_FAST x (line +1) at 0, RETURN_VALUE (+2) at 6; no
            # instruction at 100.
            assert lines(result)[4:] == ["[1,", "2,", "-1]"]
            assert result.stderr == ""
        else:
            assert lines(result)[4:] == []
            assert "tracer has no FuncCodeInfo.get_line_of_offset" in result.stderr

    def test_too_late(self, tmp_path: Path) -> None:
        result = load_constants(fake_pydevd(tmp_path),
                                before="import _pydevd_bundle.pydevd_constants")
        assert lines(result)[:2] == ["False", "False"]
        assert "pydevd was imported before the hook" in result.stderr


@pytest.mark.skipif(ENGINE, reason="only where lowimpact needs no engine")
def test_native_versions_leave_pydevd_alone(tmp_path: Path) -> None:
    result = load_constants(fake_pydevd(tmp_path))
    assert lines(result)[:2] == ["False", "True"]
    assert result.stderr == ""


def test_versions_without_engine_leave_pydevd_alone(tmp_path: Path, python38: str) -> None:
    result = load_constants(fake_pydevd(tmp_path), python=python38)
    assert lines(result)[:2] == ["False", "False"]
    assert "no sys.monitoring engine for Python 3.8" in result.stderr
    assert FALLBACK in result.stderr


def test_environment_value_not_understood(tmp_path: Path) -> None:
    code = "from lowimpact.tools.debugpy import enable_from_environment as e; e()"
    env = pythonpath(lowimpact_path())
    env["LOWIMPACT_DEBUGPY"] = "maybe"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "LOWIMPACT_DEBUGPY='maybe' is neither 1 nor 0; ignored" in result.stderr


def test_debugpy_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from lowimpact.tools import debugpy as hook

    # A None entry in sys.modules is how Python marks a module as not there.
    monkeypatch.setitem(sys.modules, "debugpy", None)
    assert hook.main(["--listen", "5678", "x.py"]) == 1
    assert "debugpy is not installed (pip install 'lowimpact[debugpy]')" in capsys.readouterr().err


needs_debugpy = pytest.mark.skipif(importlib.util.find_spec("debugpy") is None,
                                   reason="debugpy is not installed (the 'test' extra has it)")


def environment_with_pth(where: Path) -> str:
    """A virtual environment whose site-packages holds the .pth file of the
    source tree, as `pip install` puts it there; lowimpact and debugpy come
    from PYTHONPATH.  Returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(str(where))
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    shutil.copy(str(PTH), os.path.join(site.stdout.strip(), PTH.name))
    return str(python)


def debugpy_parent() -> str:
    spec = importlib.util.find_spec("debugpy")
    assert spec is not None and spec.origin
    return os.path.dirname(os.path.dirname(spec.origin))


def tracer_at_first_call(session: Session) -> str:
    """Run the program to first_call(); check the stop; return what pydevd
    traces with there: "settrace" or the module behind sys.monitoring."""
    session.start({PROGRAM: [{"line": AT["first_call"]}]})
    stop = session.stopped()
    frames = session.stack(stop["threadId"])
    assert [(f["name"], f["line"]) for f in frames] == [("first_call", AT["first_call"]),
                                                        ("<module>", AT["module"])]
    tracer = session.evaluate("'settrace' if __import__('sys').gettrace() else "
                              "__import__('sys').monitoring.__name__", frames[0]["id"])
    session.resume("continue", stop["threadId"])
    assert session.wait_exit() == 0
    return tracer.strip("'")


def expected_tracer(opted_in: bool) -> str:
    if sys.version_info >= (3, 12):
        return "sys.monitoring"
    return "lowimpact.monitoring" if opted_in and ENGINE else "settrace"


@needs_debugpy
@pytest.mark.parametrize("value", ["1", ""])
def test_pth_opt_in(tmp_path: Path, value: str) -> None:
    """A launch one does not control (``python -m debugpy``, as VS Code's
    launcher starts it) with LOWIMPACT_DEBUGPY=1: pydevd traces with
    lowimpact's engine on 3.10 and 3.11; without it, with sys.settrace."""
    python = environment_with_pth(tmp_path / "venv")
    env = pythonpath(lowimpact_path(), debugpy_parent())
    env["LOWIMPACT_DEBUGPY"] = value
    with Session([python, "-m", "debugpy"], PROGRAM, ["none"], env=env) as session:
        tracer = tracer_at_first_call(session)
    assert tracer == expected_tracer(bool(value)), session.stderr


@needs_debugpy
def test_vscode_launch(tmp_path: Path) -> None:
    """VS Code's way: its adapter launches the program with the environment
    of the launch configuration, here LOWIMPACT_DEBUGPY=1."""
    python = environment_with_pth(tmp_path / "venv")
    env = pythonpath(lowimpact_path(), debugpy_parent())
    debuggee_env = {"LOWIMPACT_DEBUGPY": "1", "PYTHONPATH": env["PYTHONPATH"]}
    with LaunchSession(python, PROGRAM, ["none"], env=env,
                       debuggee_env=debuggee_env) as session:
        tracer = tracer_at_first_call(session)
    assert tracer == expected_tracer(True), session.stderr


def test_pth_does_nothing_unset(tmp_path: Path) -> None:
    """Unset, the .pth file imports nothing: its cost is a dictionary look-up."""
    python = environment_with_pth(tmp_path / "venv")
    env = pythonpath(lowimpact_path())
    env.pop("LOWIMPACT_DEBUGPY", None)
    result = subprocess.run([python, "-c", "import sys; print(sorted(m for m in sys.modules "
                             "if m.startswith('lowimpact')))"], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_pth_quiet_without_pydevd(tmp_path: Path) -> None:
    """Set, it says nothing in processes that never load pydevd (such as
    VS Code's launcher), even where it would have to warn."""
    python = environment_with_pth(tmp_path / "venv")
    env = pythonpath(lowimpact_path())
    env["LOWIMPACT_DEBUGPY"] = "1"
    result = subprocess.run([python, "-c", "import sys; print(hasattr(sys, 'monitoring'))"],
                            env=env, capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == ""
    assert result.stdout.strip() == str(sys.version_info >= (3, 12))


def test_installed_with_the_package() -> None:
    """pip install puts the .pth file into site-packages (setup.py's build_py)."""
    from importlib import metadata

    import lowimpact

    try:
        dist = metadata.distribution("lowimpact")
    except metadata.PackageNotFoundError:
        pytest.skip("lowimpact runs from the source tree here, not installed")
    installed = os.path.realpath(str(dist.locate_file("lowimpact/__init__.py")))
    # An in-place build's egg-info has no RECORD, which installers write.
    if installed != os.path.realpath(lowimpact.__file__) or dist.read_text("RECORD") is None:
        pytest.skip("lowimpact runs from the source tree here, not installed")
    assert PTH.name in [str(f) for f in dist.files or []]
    assert os.path.isfile(str(dist.locate_file(PTH.name)))
