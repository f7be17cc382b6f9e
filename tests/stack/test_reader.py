"""The reader against CPython 3.9-3.13 children parked in a known stack."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading

import pytest

from lowimpact.tools.stack import (
    NotPythonError,
    UnsupportedVersionError,
    attach,
    read_stacks,
)

from .conftest import (
    HERE,
    MINORS,
    PARKED,
    expected_main_stack,
    expected_worker_stack,
    find_python,
    markers,
    start_parked,
    stop_parked,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the stack reader reads Linux processes")


def own_frames(stack):
    """(name, line) of the frames of parked.py, outermost first."""
    return [(f.name, f.line) for f in stack.frames if f.filename == PARKED]


def split_threads(stacks, pid):
    main = [s for s in stacks if s.native_id == pid]
    others = [s for s in stacks if s.native_id != pid]
    assert len(main) == 1 and len(others) == 1, stacks
    return main[0], others[0]


def test_threads_and_frames(parked):
    reader = attach(parked.process.pid)
    assert reader.version[:2] == parked.version
    stacks = read_stacks(reader)
    main, worker = split_threads(stacks, parked.process.pid)
    # The main thread runs nothing but parked.py's frames.
    assert [f.filename for f in main.frames] == [PARKED] * len(main.frames)
    assert own_frames(main) == expected_main_stack(parked.version)
    # The worker: threading's bootstrap, the two functions, threading's wait.
    names = [f.name.rsplit(".", 1)[-1] for f in worker.frames]
    assert own_frames(worker) == expected_worker_stack()
    assert names.index("worker") + 1 == names.index("worker_inner")
    assert names[-2:] == ["wait", "wait"]
    assert all(f.filename.endswith("threading.py") for f in worker.frames
               if f.filename != PARKED)
    # thread ids: threading's ident and the kernel's tid.
    assert worker.native_id in [int(t) for t in os.listdir("/proc/%d/task" % reader.pid)]
    assert worker.native_id != parked.process.pid


def test_gil(parked):
    reader = attach(parked.process.pid)
    assert reader.gil_readable
    stacks = read_stacks(reader)
    # Both threads wait in C with the GIL released.
    assert [s.holds_gil for s in stacks] == [False, False]


def test_code_objects_read_are_the_running_ones(parked):
    reader = attach(parked.process.pid)
    threads = reader.threads(with_code=True)
    seen = {}
    for _ident, _native, _gil, frames in threads:
        for filename, name, _line, code in frames:
            if filename == PARKED:
                seen[name.rsplit(".", 1)[-1]] = code
    assert seen == parked.code_ids


def test_stack_command(parked):
    out = subprocess.run(
        [sys.executable, "-m", "lowimpact", "stack", "--no-source", str(parked.process.pid)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True).stdout
    lines = out.splitlines()
    major, minor = parked.version
    assert lines[0].startswith("Process %d: CPython %d.%d." % (parked.process.pid, major, minor))
    start = lines.index(next(line for line in lines
                             if line.startswith("Thread %d " % parked.process.pid)))
    assert lines[start].endswith("(most recent call last):")
    expected = ['  File "%s", line %d, in %s' % (PARKED, line, name)
                for name, line in expected_main_stack(parked.version)]
    assert lines[start + 1:start + 1 + len(expected)] == expected
    # Innermost last: nothing of that thread follows.
    assert lines[start + 1 + len(expected):start + 2 + len(expected)] in ([], [""])
    assert "No thread holds the GIL." in lines


def test_stack_command_shows_source(parked):
    out = subprocess.run([sys.executable, "-m", "lowimpact", "stack", str(parked.process.pid)],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    assert "    sys.stdin.read()  # at: innermost\n" in out


@pytest.mark.skipif(sys.version_info[:2] not in ((3, 9), (3, 10), (3, 11)),
                    reason="the engine runs on 3.9-3.11; its children use this "
                    "interpreter's lowimpact")
def test_engine_shadows_show_the_original():
    child = start_parked(sys.executable, "--engine")
    try:
        reader = attach(child.process.pid)
        stacks = read_stacks(reader)
        main, worker = split_threads(stacks, child.process.pid)
        assert own_frames(main) == expected_main_stack(sys.version_info[:2])
        assert own_frames(worker) == expected_worker_stack()
        # The frames run the engine's instrumented copies, not the originals
        # Python code sees: else this test would prove nothing.
        running = {}
        for _ident, _native, _gil, frames in reader.threads(with_code=True):
            for filename, name, _line, code in frames:
                if filename == PARKED:
                    running[name.rsplit(".", 1)[-1]] = code
        assert set(running) == set(child.code_ids)
        shadowed = [name for name in running if running[name] != child.code_ids[name]]
        assert "innermost" in shadowed and "worker_inner" in shadowed, shadowed
    finally:
        stop_parked(child)


def test_no_such_process():
    # A pid that existed and is gone.
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    with pytest.raises(ProcessLookupError, match="no process with id %d" % process.pid):
        attach(process.pid)


def test_not_python():
    process = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(NotPythonError, match="not a CPython process"):
            attach(process.pid)
        result = subprocess.run([sys.executable, "-m", "lowimpact", "stack", str(process.pid)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert result.returncode == 1
        assert "is not a CPython process" in result.stderr
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("minor", [6, 7, 8])
def test_unsupported_version(minor):
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    process = subprocess.Popen([python, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        with pytest.raises(UnsupportedVersionError, match=r"3\.%d.*not supported" % minor):
            # Retry while the child is still starting (no runtime mapped yet).
            for _ in range(200):
                try:
                    attach(process.pid)
                except NotPythonError:
                    threading.Event().wait(0.01)
    finally:
        process.stdin.close()
        process.wait()


def test_no_permission(parked):
    # Read the (root or own) parked child as another user: as nobody when
    # root, else read init, which is root's.
    script = ("import os, sys\n"
              "from lowimpact.tools.stack import attach\n"
              "pid = int(sys.argv[1]) if os.geteuid() == 0 else 1\n"
              "if os.geteuid() == 0: os.setgid(65534); os.setuid(65534)\n"
              "try:\n"
              "    attach(pid)\n"
              "except PermissionError as exc:\n"
              "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", script, str(parked.process.pid)],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    assert "not allowed to read process" in out
    assert "ptrace_scope" in out and "CAP_SYS_PTRACE" in out


def test_reader_not_initialised():
    from lowimpact import _stack

    reader = _stack.Reader.__new__(_stack.Reader)
    with pytest.raises(ValueError, match="not initialised"):
        reader.sample()
    with pytest.raises(ValueError, match="not initialised"):
        reader.threads()


def test_reader_reinitialised(parked):
    """A second __init__ reads the new process, with nothing cached from the first."""
    other = start_parked(sys.executable)
    try:
        reader = attach(other.process.pid)
        assert reader.sample() is not None
        reader.__init__(parked.process.pid)
        assert reader.pid == parked.process.pid and reader.samples_taken == 0
        assert reader.version[:2] == parked.version
        main, _worker = split_threads(read_stacks(reader), parked.process.pid)
        assert own_frames(main) == expected_main_stack(parked.version)
    finally:
        stop_parked(other)


CBOTTOM = os.path.join(HERE, "cbottom.py")


@contextlib.contextmanager
def ready_child(minor, program, *args):
    """A CPython 3.minor child running *program* with *args* (one of this
    directory's, which prints "ready" once parked and waits until its stdin
    closes)."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    child = subprocess.Popen([python, program, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        yield child
    finally:
        child.stdin.close()
        child.wait()


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_generator_and_coroutine_resumed_from_c(minor):
    """A thread whose outermost frame is a running generator's or
    coroutine's, with no Python frame below (before 3.12 no entry frame
    either), is read as it is, not as a stack torn by a suspending
    generator."""
    with ready_child(minor, CBOTTOM) as child:
        reader = attach(child.pid)
        stacks = [s for s in read_stacks(reader) if s.native_id != child.pid]
        at = markers(CBOTTOM)
        assert sorted((s.frames[0].name, s.frames[0].line) for s in stacks) == [
            ("coroutine", at["coroutine"]), ("generator", at["generator"])]
        for stack in stacks:
            assert [f.name.rsplit(".", 1)[-1] for f in stack.frames[1:]] == ["wait", "wait"]
        assert all(reader.sample() is not None for _ in range(20))
        assert reader.samples_torn == 0


FINALIZER = os.path.join(HERE, "finalizer.py")


@pytest.mark.parametrize("from_c", [False, True], ids=["", "from-c"])
@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_finalizer_run_by_a_return(minor, from_c):
    """A finalizer run while a returning frame is cleared (a local's
    __del__) is read under the frame that called the returning one: its
    frame lies above the returning frame's (3.12+: not where its caller's
    frame ends), which is not a stack mixed from two moments."""
    with ready_child(minor, FINALIZER, *(["from-c"] if from_c else [])) as child:
        reader = attach(child.pid)
        [stack] = read_stacks(reader)
        at = markers(FINALIZER)
        frames = [(f.name.rsplit(".", 1)[-1], f.line) for f in stack.frames
                  if f.filename == FINALIZER]
        assert frames[0] == ("<module>", at["caller_c" if from_c else "caller"])
        assert frames[-1] == ("__del__", at["finalizer"])
        # (3.11 still links the finalizer's frame to the returning one.)
        assert [name for name, _ in frames[1:-1]] in ([], ["returns"])
        assert all(reader.sample() is not None for _ in range(20))
        assert reader.samples_dropped == 0


CBACK = os.path.join(HERE, "cback.py")


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_generator_resumed_from_c_calling_back_through_c(minor):
    """A generator resumed from C at a thread's bottom, whose call into C
    (sorted) calls Python again, is read as it is."""
    with ready_child(minor, CBACK) as child:
        reader = attach(child.pid)
        [stack] = [s for s in read_stacks(reader) if s.native_id != child.pid]
        at = markers(CBACK)
        assert [(f.name, f.line) for f in stack.frames[:2]] == [
            ("generator", at["generator"]), ("key", at["key"])]
        assert all(reader.sample() is not None for _ in range(20))
        assert reader.samples_dropped == 0


INITSHIM = os.path.join(HERE, "initshim.py")


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_init_called_by_a_specialised_call(minor):
    """A class's __init__ called by a call the interpreter specialised is
    read under the function that made the instance, with no frame between
    them (3.13's shim frame, of the interpreter's own code object named
    __init__ in a file named __init__, is left out)."""
    with ready_child(minor, INITSHIM) as child:
        reader = attach(child.pid)
        [stack] = read_stacks(reader)
        at = markers(INITSHIM)
        assert [(f.filename, f.name.rsplit(".", 1)[-1], f.line) for f in stack.frames] == [
            (INITSHIM, "<module>", at["module"]), (INITSHIM, "make", at["make"]),
            (INITSHIM, "__init__", at["init"])]
        assert all(reader.sample() is not None for _ in range(20))
        assert reader.samples_torn == 0
