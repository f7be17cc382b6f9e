"""What each interpreter version gets from the package."""

import os
import subprocess
import sys

import pytest

import lowimpact


def test_get_include_holds_the_header():
    assert os.path.isfile(os.path.join(lowimpact.get_include(), "lowimpact.h"))


def test_monitoring_module_per_version():
    from lowimpact import monitoring as M

    names = ("use_tool_id", "free_tool_id", "get_tool", "register_callback", "get_events",
             "set_events", "get_local_events", "set_local_events", "restart_events",
             "events", "DISABLE", "MISSING")
    if sys.version_info >= (3, 12):
        # The interpreter's own objects.
        for name in names:
            assert getattr(M, name) is getattr(sys.monitoring, name)
    else:
        from lowimpact import _engine

        for name in names:
            assert getattr(M, name) is getattr(_engine, name) or name in (
                "set_events", "set_local_events")   # Python wrappers, see monitoring.py


def test_install_puts_monitoring_on_sys():
    from lowimpact import monitoring

    had = hasattr(sys, "monitoring")
    saved = getattr(sys, "monitoring", None)
    try:
        lowimpact.install()
        if sys.version_info >= (3, 12):
            assert sys.monitoring is saved
        else:
            assert sys.monitoring is monitoring
    finally:
        if not had:
            del sys.monitoring


def test_command_line_per_version(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    run = subprocess.run([sys.executable, "-m", "lowimpact", "run", str(script)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "hello\n"


@pytest.mark.parametrize("command, message", [
    (["run"], "lowimpact.monitoring supports CPython 3.9, 3.10, 3.11, 3.12 and 3.13; this is "
              "cpython 3.8"),
    (["debug"], "provides on CPython 3.9, 3.10, 3.11, 3.12 and 3.13; this is cpython 3.8"),
    (["profile"], "needs CPython 3.9 or newer (lowimpact's engine, or sys.monitoring); this is 3.8"),
    (["cover", "run"], "needs CPython 3.9 or newer"),
])
def test_tools_on_an_older_python_say_what_they_need(tmp_path, python38, command, message):
    python = python38
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    src = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    run = subprocess.run([python, "-m", "lowimpact"] + command + [str(script)],
                         capture_output=True, text=True, cwd=str(tmp_path),
                         env=dict(os.environ, PYTHONPATH=src))
    assert run.returncode == 1 and message in run.stderr and "hello" not in run.stdout
