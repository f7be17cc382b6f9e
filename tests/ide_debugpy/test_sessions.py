"""debugpy sessions through ``python -m lowimpact debugpy``, judged by native 3.12.

Each test drives a program (programs/target.py) under debugpy with a minimal
DAP client (dap.py), as VS Code would, and writes down every stop: reason,
the stack (function and line of each frame) and the top frame's variables.
The same script drives the same program under ``python -m debugpy`` on the
oracle, and the stops must be the same:

- on 3.9, 3.10 and 3.11, the oracle is CPython 3.12 (or 3.13) running the very
  debugpy files installed here (pydevd's pure-Python ``sys.monitoring`` tracer
  there, on lowimpact's engine here; on 3.9 that is debugpy 1.8.21 or older,
  the last releases for 3.9); the tests also check that pydevd traced with
  ``sys.monitoring`` on lowimpact's engine, not ``sys.settrace``;
- on 3.12 and newer, where ``python -m lowimpact debugpy`` is debugpy
  itself, the oracle is ``python -m debugpy`` on the same interpreter.

The stop lines are also checked against the program's ``# at:`` markers, so
that two sessions that both stop nowhere do not pass.
"""

from __future__ import annotations

import concurrent.futures
import glob
import importlib.util
import os
import re
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest

from .dap import Session, pythonpath

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "programs", "target.py")
# Where lowimpact's engine stands in for sys.monitoring.
ENGINE = sys.version_info[:2] in ((3, 9), (3, 10), (3, 11))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("debugpy") is None,
                                reason="debugpy is not installed (the 'test' extra has it)")


def markers() -> Dict[str, int]:
    found = {}
    with open(PROGRAM) as f:
        for number, line in enumerate(f, 1):
            match = re.search(r"# at: (\w+)", line)
            if match:
                found[match.group(1)] = number
    return found


AT = markers()


def lowimpact_path() -> str:
    """The directory lowimpact is imported from (src/ or site-packages)."""
    import lowimpact

    return os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))


def native_python() -> Optional[str]:
    """The newest pyenv CPython 3.12 or 3.13, the oracle of the engine."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for minor in (12, 13):
        for candidate in sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor)),
                                reverse=True):
            python = os.path.join(candidate, "bin", "python3.%d" % minor)
            if os.access(python, os.X_OK):
                return python
    return None


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Tuple["Side", "Side"]:
    """(the side under test, the oracle)."""
    tested = Side([sys.executable, "-m", "lowimpact", "debugpy"], pythonpath(lowimpact_path()))
    if not ENGINE:
        return tested, Side([sys.executable, "-m", "debugpy"], pythonpath())
    python = native_python()
    if python is None:
        pytest.skip("no CPython 3.12 or 3.13 under pyenv to be the oracle")
    # The debugpy installed here, alone on the path: the same debugger code
    # on both sides.
    spec = importlib.util.find_spec("debugpy")
    assert spec is not None and spec.submodule_search_locations
    only = tmp_path_factory.mktemp("debugpy-only")
    os.symlink(list(spec.submodule_search_locations)[0], str(only / "debugpy"))
    return tested, Side([python, "-m", "debugpy"], pythonpath(str(only)))


class Side:
    """How to start debugpy on one side of the comparison."""

    def __init__(self, launcher: Sequence[str], env: Dict[str, str]) -> None:
        self.launcher = list(launcher)
        self.env = env
        self.tracer: Optional[str] = None
        self.stderr = ""

    def session(self, *args: str) -> Session:
        return Session(self.launcher, PROGRAM, args, env=self.env)


def _comparable_value(value: str) -> str:
    """A shown value without what the interpreter, not the program, decides:
    object addresses, and where a module came from (3.11+ freeze os and
    other modules that 3.10 loads from their files)."""
    value = re.sub(r" at 0x[0-9a-f]+", "", value)
    return re.sub(r"<module '([^']*)' (?:from '[^']*'|\(frozen\))>", r"<module '\1'>", value)


def record(session: Session, stop: dict, *, values: bool = True) -> str:
    """One stop, written down: reason, stack, the top frame's variables."""
    frames = session.stack(stop["threadId"])
    stack = " <- ".join("%s:%d" % (f["name"], f["line"]) for f in frames)
    variables = session.locals(frames[0]["id"])
    shown = sorted((name, value if values else "") for name, value in variables.items()
                   if not name.startswith("__") and not name.endswith(" variables"))
    text = "%s %s {%s}" % (stop["reason"], stack,
                           ", ".join("%s=%s" % (n, _comparable_value(v))
                                     if values else n for n, v in shown))
    if stop["reason"] == "exception":
        info = session.client.request("exceptionInfo", {"threadId": stop["threadId"]})
        text += " %s: %s (%s)" % (info["exceptionId"], info["description"], info["breakMode"])
    return text


Script = Callable[[Side, Session, Sequence[str]], List[str]]


def run(side: Side, script: Script, args: Sequence[str]) -> List[str]:
    with side.session(*args) as session:
        try:
            return script(side, session, args)
        finally:
            session.kill()
            side.stderr = session.stderr


def compare(sides: Tuple[Side, Side], script: Script,
            args: Callable[[int], Sequence[str]]) -> List[str]:
    """Run *script* on both sides at once (the program's arguments for each
    side are *args(0)* and *args(1)*); return the oracle's stops after
    checking that the tested side's are the same."""
    tested, oracle = sides
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run, side, script, args(index)) for index, side in enumerate(sides)]
        got, expected = [f.result() for f in futures]
    assert got == expected, "\n".join(["tested:", *got, "oracle:", *expected,
                                       "tested's stderr:", tested.stderr[-3000:]])
    if ENGINE:
        assert tested.tracer == "pydevd lowimpact.monitoring", (tested.tracer, tested.stderr)
        assert oracle.tracer == "pydevd sys.monitoring", (oracle.tracer, oracle.stderr)
    else:
        assert tested.tracer == oracle.tracer
    return expected


def note_tracer(side: Side, session: Session, stop: dict) -> None:
    """Which tracer pydevd uses: the name of sys.monitoring's debugger tool
    and the module behind sys.monitoring, or "settrace"."""
    frame = session.stack(stop["threadId"])[0]["id"]
    side.tracer = session.evaluate(
        "'settrace' if __import__('sys').gettrace() else "
        "'%s %s' % (__import__('sys').monitoring.get_tool(0), "
        "__import__('sys').monitoring.__name__)", frame).strip("'")


def line_of(stop: str) -> int:
    """The top frame's line in a recorded stop."""
    return int(stop.split(" ")[1].split(":")[1])


def stops_until_end(side: Side, session: Session, count: int, *,
                    command: str = "continue", status: int = 0) -> List[str]:
    """Record *count* stops, resuming with *command* after each; then let
    the program end with *status*."""
    stops = []
    for index in range(count):
        stop = session.stopped()
        stops.append(record(session, stop))
        if index == 0:
            note_tracer(side, session, stop)
        session.resume(command if index < count - 1 else "continue", stop["threadId"])
    assert session.wait_exit() == status
    return stops


def fixed(*args: str) -> Callable[[int], Sequence[str]]:
    return lambda index: args


def test_first_call_and_module_level(sides: Tuple[Side, Side]) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start({PROGRAM: [{"line": AT["first_call"]}, {"line": AT["end"]}]})
        return stops_until_end(side, session, 2)

    stops = compare(sides, script, fixed("none"))
    assert [line_of(s) for s in stops] == [AT["first_call"], AT["end"]]


def test_hot_loop(sides: Tuple[Side, Side]) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start({PROGRAM: [{"line": AT["hot_loop"]}]})
        stops = []
        for index in range(4):
            stop = session.stopped()
            stops.append(record(session, stop))
            if index == 0:
                note_tracer(side, session, stop)
            if index == 3:
                session.set_breakpoints(PROGRAM, [])
            session.resume("continue", stop["threadId"])
        assert session.wait_exit() == 0
        return stops

    stops = compare(sides, script, fixed("calls"))
    assert [line_of(s) for s in stops] == [AT["hot_loop"]] * 4
    assert "i=3" in stops[-1]


def test_conditional(sides: Tuple[Side, Side]) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start({PROGRAM: [{"line": AT["square"], "condition": "n == 250"}]})
        return stops_until_end(side, session, 1)

    stops = compare(sides, script, fixed("calls"))
    assert [line_of(s) for s in stops] == [AT["square"]]
    assert "n=250" in stops[0]


# In a function the loop calls, and in the loop's own frame, which started
# before the breakpoint was set.
@pytest.mark.parametrize("where", ["tick", "spin_loop"])
def test_added_while_running(sides: Tuple[Side, Side], tmp_path, where: str) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        ready, flag = args[1], args[2]
        session.start()
        deadline = time.monotonic() + 20
        while not os.path.exists(ready):
            assert time.monotonic() < deadline, "the program did not start"
            time.sleep(0.02)
        time.sleep(0.2)
        session.set_breakpoints(PROGRAM, [{"line": AT[where]}])
        stop = session.stopped()
        # How far the loop got depends on timing: names only.
        stops = [record(session, stop, values=False)]
        note_tracer(side, session, stop)
        session.set_breakpoints(PROGRAM, [])
        open(flag, "w").close()
        session.resume("continue", stop["threadId"])
        assert session.wait_exit() == 0
        return stops

    def args(index: int) -> Sequence[str]:
        return ("spin", str(tmp_path / ("ready%d" % index)), str(tmp_path / ("flag%d" % index)))

    stops = compare(sides, script, args)
    assert [line_of(s) for s in stops] == [AT[where]]


def test_stepping(sides: Tuple[Side, Side]) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start({PROGRAM: [{"line": AT["step_start"]}]})
        stops = []
        for index, command in enumerate(("stepIn", "next", "stepOut", "next", "continue")):
            stop = session.stopped()
            stops.append(record(session, stop))
            if index == 0:
                note_tracer(side, session, stop)
            session.resume(command, stop["threadId"])
        assert session.wait_exit() == 0
        return stops

    stops = compare(sides, script, fixed("calls"))
    assert [line_of(s) for s in stops][:3] == [AT["step_start"], AT["square"],
                                                AT["square_return"]]
    assert line_of(stops[-1]) == AT["step_next"]


def test_step_off_the_end(sides: Tuple[Side, Side]) -> None:
    """With justMyCode off, stepping past the program's last line must not
    land in the frames that launched it (lowimpact's, debugpy's, runpy's)."""

    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start({PROGRAM: [{"line": AT["end"]}]}, just_my_code=False)
        stops = []
        while len(stops) < 5:
            message = session.client.wait(
                lambda m: m["type"] == "event" and m["event"] in ("stopped", "terminated"))
            if message["event"] == "terminated":
                break
            stop = message["body"]
            stops.append(record(session, stop))
            if len(stops) == 1:
                note_tracer(side, session, stop)
            session.resume("next", stop["threadId"])
        assert session.wait_exit() == 0
        return stops

    stops = compare(sides, script, fixed("none"))
    assert [line_of(s) for s in stops] == [AT["end"]]


def test_caught_exception(sides: Tuple[Side, Side]) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start(exceptions=["raised"])
        return stops_until_end(side, session, 1)

    stops = compare(sides, script, fixed("caught"))
    assert [line_of(s) for s in stops] == [AT["raise"]]
    assert "ValueError" in stops[0]


def test_uncaught_exception(sides: Tuple[Side, Side]) -> None:
    def script(side: Side, session: Session, args: Sequence[str]) -> List[str]:
        session.start(exceptions=["uncaught"])
        return stops_until_end(side, session, 1, status=1)

    stops = compare(sides, script, fixed("crash"))
    assert [line_of(s) for s in stops] == [AT["crash"]]
    assert "KeyError" in stops[0]
