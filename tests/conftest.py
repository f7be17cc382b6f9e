"""Shared fixtures.

Every test runs against ``lowimpact.monitoring``: the interpreter's own
``sys.monitoring`` on 3.12+ (the oracle) and lowimpact's engine on 3.9-3.11.
Each test must leave no tool, event or callback behind; the autouse fixture
checks that and cleans up so one failure does not cascade.
"""

import sys

import pytest

SUPPORTED = sys.version_info[:2] >= (3, 9)

if sys.version_info[:2] >= (3, 12):
    # White-box tests of the bytecode engine, which 3.12+ does not use.
    collect_ignore_glob = ["engine/*"]


# What a back end does not do yet, per version, by the tests that show it
# (test functions, every parametrization): expected to fail there, with the
# missing feature as the reason; an xfail that passes is reported (XPASS).
GAPS = {
    (3, 9): {
    },
    (3, 10): {
    },
    (3, 11): {
    },
}


def pytest_collection_modifyitems(config, items):
    gaps = GAPS.get(sys.version_info[:2])
    if not gaps:
        return
    reason_of = {test: reason for reason, tests in gaps.items() for test in tests}
    for item in items:
        node = item.nodeid[len("tests/"):] if item.nodeid.startswith("tests/") else item.nodeid
        # An entry names a test function (every parametrization) or one
        # parametrization.
        reason = reason_of.get(node, reason_of.get(node.split("[")[0]))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


TOOL_IDS = range(6)


def _event_bits(M):
    return [v for k, v in vars(M.events).items() if k.isupper() and k != "NO_EVENTS"]


@pytest.fixture
def M():
    """The monitoring module under test."""
    from lowimpact import monitoring

    return monitoring


@pytest.fixture(autouse=True)
def _no_leftover_monitoring():
    yield
    if not SUPPORTED:
        return
    from lowimpact import monitoring as M

    leftovers = []
    for tool in TOOL_IDS:
        if M.get_tool(tool) is not None:
            leftovers.append("tool %d in use (%r)" % (tool, M.get_tool(tool)))
        if M.get_events(tool):
            leftovers.append("tool %d has global events %#x" % (tool, M.get_events(tool)))
        for bit in _event_bits(M):
            if M.register_callback(tool, bit, None) is not None:
                leftovers.append("tool %d has a callback for event %#x" % (tool, bit))
        if M.get_tool(tool) is not None:
            M.set_events(tool, 0)
            M.free_tool_id(tool)
    M.restart_events()
    assert not leftovers, "test left monitoring state behind: " + "; ".join(leftovers)


@pytest.fixture
def python38():
    """A CPython lowimpact does not support (3.8, under $(pyenv root)), or skip:
    the tools' messages for an interpreter without sys.monitoring."""
    from conformance.test_fuzz import find_native_python

    found = find_native_python("3.8")
    if found is None:
        pytest.skip("no CPython 3.8 under $(pyenv root)/versions")
    return found
