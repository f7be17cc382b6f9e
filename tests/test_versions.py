"""What each interpreter version gets from the package."""

import os
import subprocess
import sys

import pytest

import lowimpact


def test_get_include_holds_the_header():
    assert os.path.isfile(os.path.join(lowimpact.get_include(), "lowimpact.h"))


def test_monitoring_module_per_version():
    if sys.version_info < (3, 10):
        # 3.9 has no engine yet: the import says which versions do.
        with pytest.raises(ImportError) as info:
            import lowimpact.monitoring  # noqa: F401
        message = str(info.value)
        assert "3.10" in message and "3.11" in message and "3.12" in message and "3.13" in message
        assert "%d.%d" % sys.version_info[:2] in message
        return
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
    if sys.version_info < (3, 10):
        with pytest.raises(ImportError):
            lowimpact.install()
        return
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
    if sys.version_info < (3, 10):
        assert run.returncode != 0 and "3.10, 3.11, 3.12 and 3.13" in run.stderr
    else:
        assert run.returncode == 0 and run.stdout == "hello\n"
