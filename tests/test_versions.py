"""What each interpreter version gets from the package."""

import os
import sys

import pytest

import lowimpact


def test_get_include_holds_the_header():
    assert os.path.isfile(os.path.join(lowimpact.get_include(), "lowimpact.h"))


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="only 3.9/3.10 lack the engine")
def test_monitoring_import_names_the_supported_versions():
    with pytest.raises(ImportError) as info:
        import lowimpact.monitoring  # noqa: F401
    message = str(info.value)
    assert "3.11" in message and "3.12" in message and "3.13" in message
    assert "%d.%d" % sys.version_info[:2] in message


@pytest.mark.skipif(sys.version_info < (3, 12), reason="native sys.monitoring only")
def test_native_monitoring_is_reexported():
    from lowimpact import monitoring as M

    for name in ("use_tool_id", "free_tool_id", "get_tool", "register_callback", "get_events",
                 "set_events", "get_local_events", "set_local_events", "restart_events",
                 "events", "DISABLE", "MISSING"):
        assert getattr(M, name) is getattr(sys.monitoring, name)


def test_install_puts_monitoring_on_sys():
    if sys.version_info < (3, 11):
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
