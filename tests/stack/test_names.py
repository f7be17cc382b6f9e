"""Thread names as threading gives them, read from CPython 3.9-3.13 children
(named.py) from outside."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time

import pytest

from lowimpact.tools.stack import attach, read_stacks, thread_name

from .conftest import HERE, MINORS, find_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the stack reader reads Linux processes")

NAMED = os.path.join(HERE, "named.py")


@pytest.fixture(params=MINORS, ids=["3.%d" % m for m in MINORS])
def named(request):
    """(process, {kernel tid: threading's name or None})."""
    python = find_python(request.param)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % request.param)
    child = subprocess.Popen([python, NAMED], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, encoding="utf-8")
    line = child.stdout.readline()
    try:
        assert line.startswith("ready "), line
        yield child, {int(tid): name for tid, name in json.loads(line[6:]).items()}
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0


def test_thread_names(named):
    child, names = named
    known = {tid: name for tid, name in names.items() if name is not None}
    # Every kind of str (1, 2 and 4 bytes a character), a rename, instances
    # with a dict of their own, split and combined dicts, and 48 threads in
    # _active.
    assert len(known) == 49 and "\U0001f9f5-astral" in known.values()
    assert attach(child.pid).thread_names() == known


def test_stacks_are_named(named):
    child, names = named
    stacks = read_stacks(attach(child.pid))
    assert {s.native_id for s in stacks} == set(names)
    for stack in stacks:
        # A thread threading does not know keeps the kernel's name.
        expected = names[stack.native_id] or thread_name(child.pid, stack.native_id)
        assert stack.name == expected and expected


def test_stack_command_prints_names(named):
    child, names = named
    out = subprocess.run([sys.executable, "-m", "lowimpact", "stack", "--no-source",
                          str(child.pid)], stdout=subprocess.PIPE, check=True,
                         encoding="utf-8").stdout
    printed = {int(m.group(1)): m.group(2)
               for m in re.finditer(r'^Thread (\d+) "(.*)" \(most recent', out, re.M)}
    assert printed == {tid: name or thread_name(child.pid, tid) for tid, name in names.items()}


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_without_threading(minor):
    """A process that never imported threading: no names, and no error."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    child = subprocess.Popen(
        [python, "-S", "-c", "import sys; print('threading' in sys.modules, flush=True); "
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "False\n"
        reader = attach(child.pid)
        assert reader.thread_names() == {}
        (stack,) = read_stacks(reader)
        assert stack.name == thread_name(child.pid, child.pid)
    finally:
        child.stdin.close()
        child.wait()


SHORTLIVED = os.path.join(HERE, "shortlived.py")


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_short_lived_threads_keep_their_own_names(minor, tmp_path):
    """threading's ident (a pthread_t) goes to a new thread as soon as one
    exits: a name is given to a thread only if its Thread is that thread's
    (checked by the kernel's tid), never the name of the thread that took
    its ident.  shortlived.py logs each thread's name with its tid."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    log = tmp_path / "threads.log"
    child = subprocess.Popen([python, SHORTLIVED, str(log)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    seen = []       # (kernel tid, name) as read, of the workers
    calls, lost = 0, []     # (call, names of lasting threads missing from it)
    stable = {"MainThread", "loop-0", "loop-1", "loop-2", "loop-3"}
    try:
        assert child.stdout.readline() == "ready\n"
        reader = attach(child.pid)
        # 3 s, and longer on a loaded machine until 20 workers' names were
        # read (at a load average of 27 on two CPUs the child started so
        # few threads that 3 s of reads sometimes met none).
        start = time.monotonic()
        while (time.monotonic() < start + 3
               or (len(seen) < 20 and time.monotonic() < start + 60)):
            names = reader.thread_names()
            seen += [(tid, name) for tid, name in names.items() if name.startswith("w-")]
            # A worker's Thread that changes while read costs that worker its
            # name, never the names of the threads that stay.
            calls += 1
            if not stable <= set(names.values()):
                lost.append((calls, sorted(stable - set(names.values()))))
            seen += [(s.native_id, s.name) for s in read_stacks(reader)
                     if s.name and s.name.startswith("w-")]
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    tids = {}
    with open(log) as f:
        for line in f:
            name, tid = line.split()
            tids[name] = int(tid)
    # (A thread seen before it wrote its line is one whose thread_names()
    # or read_stacks() call came before its last moments: still logged.)
    wrong = [(tid, name, tids.get(name)) for tid, name in seen if tids.get(name) != tid]
    assert seen and not wrong, "%d of %d names wrong, e.g. %s" % (len(wrong), len(seen),
                                                                 wrong[:5])
    # A read that loses names is dropped data, not wrong data, but it should
    # not happen: when the dict read from a moved table went unnoticed,
    # 32 of 97 runs lost names (8 of 23,400 calls in a script).  When names
    # were read with a whole stack sample, a call whose 100 samples were all
    # torn (some thread's stack torn in each, as when threads wait for the
    # GIL) returned no name at all, none counted unread: 1 call in 3,361 on
    # 3.13 in CI; the names are now read with the threads alone.
    assert not lost, (
        "%d of %d reads lost a lasting thread's name (%d unread, %d mismatched, %d torn): %s"
        % (len(lost), calls, reader.names_unread, reader.names_mismatched, reader.names_torn,
           lost[:5]))


COLLIDE = os.path.join(HERE, "collide.py")
UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_a_tid_that_looks_like_an_address(minor):
    """Before 3.11 a thread's kernel tid is read from glibc's struct pthread.
    Where that is was once found by taking the first word of one struct
    pthread that held any tid of the target; a thread whose tid equalled the
    high half of the struct's list pointers (0x7e00-0x7fff, tids a busy
    machine reaches) made those pointers every thread's "tid", and all names
    but that thread's were lost (CI, 3.10: 46 of 47).  collide.py makes that
    happen in a PID namespace of its own; glibc's own description of struct
    pthread (thread_db) and the offset learnt from every thread (thread_db
    False) both give each thread its name."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    try:
        probe = subprocess.run(UNSHARE + ["true"], stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip("no unshare: %s" % e)
    if probe.returncode != 0:
        pytest.skip("no user and PID namespaces here: %s" % probe.stderr.decode().strip())
    import lowimpact
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(lowimpact.__file__)))
    out = subprocess.run(UNSHARE + [sys.executable, COLLIDE, python], env=env, check=True,
                         stdout=subprocess.PIPE, encoding="utf-8", timeout=120).stdout
    if out.startswith("skip:"):
        pytest.skip(out.strip())
    report = json.loads(out)
    names = {int(tid): name for tid, name in report["names"].items()}
    known = {str(tid): name for tid, name in names.items() if name is not None}
    # The condition holds: a thread other than the newest has the tid that is
    # the high half of the addresses its thread stacks are at.
    assert 0x7FFF in names and max(names) != 0x7FFF and 0x7FFF in report["high_halves"]
    assert sorted(report["tids"]) == sorted(names)
    # (glibc describes struct pthread for debuggers; musl does not.)
    described = "thread_db" if platform.libc_ver()[0] == "glibc" else "learnt"
    for thread_db, read in report["reads"].items():
        expected_source = ("thread state" if minor >= 11
                           else described if thread_db == "True" else "learnt")
        assert read["tid_source"] == expected_source
        assert read["names"] == known, thread_db
        assert read["counters"] == [0, 0, 0]


RESIZING = os.path.join(HERE, "resizing.py")


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_a_dict_read_while_it_resizes_is_torn(minor):
    """A resize points the dict to its new keys before it fills them, and
    a dict that keeps resizing goes back and forth between two blocks: a
    read of _active that met either found the dict where it was, a table
    with none of the threads in it, and every name was lost with nothing
    counted (about one call in four against resizing.py).  Every call names
    the threads that stay, or counts them unread."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    child = subprocess.Popen([python, RESIZING], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    stable = {"MainThread", "lasting-0", "lasting-1", "lasting-2", "resizer"}
    calls, lost = 0, []
    try:
        assert child.stdout.readline() == "ready\n"
        reader = attach(child.pid)
        start = time.monotonic()
        while time.monotonic() < start + 2:
            unread = reader.names_unread
            names = set(reader.thread_names().values())
            calls += 1
            if not stable <= names and reader.names_unread == unread:
                lost.append((calls, sorted(stable - names)))
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    assert calls and not lost, ("%d of %d reads lost names uncounted: %s"
                                % (len(lost), calls, lost[:5]))
