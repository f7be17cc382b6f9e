"""The C core (lowimpact._cover.Collector) on its own: what a second
collector sees after a first one DISABLEd everything, a running collector
dropped in a reference cycle, test contexts when giving events fails, and
test contexts of threads."""

from __future__ import annotations

import contextlib
import sys
import gc
import threading
import time

import pytest

_cover = pytest.importorskip("lowimpact._cover")
from lowimpact import monitoring  # noqa: E402

TOOL = 3   # not coverage's id: the test process may be measured


def branchy(x):
    if x:
        return 1
    return 2


def measure_branchy() -> list:
    collector = _cover.Collector(TOOL, lambda name, frame: name if name == __file__ else None,
                                 branch=True)
    collector.start()
    try:
        branchy(1)
        branchy(0)
    finally:
        collector.stop()
    codes, lines, branches, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is branchy.__code__]
    return sorted(lines[key]), sum(len(d) for d in branches[key].values())


def test_second_collector_sees_what_the_first_disabled() -> None:
    first = measure_branchy()
    # Every line, PY_START and both branch directions were DISABLEd by the
    # first collector; the second sees them all the same.
    assert measure_branchy() == first
    first_line = branchy.__code__.co_firstlineno
    assert first == ([first_line + 1, first_line + 2, first_line + 3], 2)


def test_running_collector_dropped_in_a_cycle() -> None:
    holder = []
    collector = _cover.Collector(TOOL, lambda name, frame, holder=holder: name)
    holder.append(collector)
    collector.start()
    branchy(1)
    del collector, holder
    gc.collect()
    # The collector was freed with its tool id, callbacks unregistered:
    # code runs on, and the id can be taken again.
    assert monitoring.get_tool(TOOL) is None
    branchy(0)
    measure_branchy()


# -- test contexts in the core ----------------------------------------------


def helper(x):
    if x:
        return 1
    return 2


def test_core_one(x=1):
    helper(x)


test_core_one.__test__ = False   # a test to the collector, not to pytest


def only_here(name, frame):
    return name if name == __file__ else None


def context_collector(**kwargs) -> "_cover.Collector":
    return _cover.Collector(TOOL, only_here, test_context=lambda frame: frame.f_code.co_name,
                            **kwargs)


def test_context_events_given_again_after_a_failure(monkeypatch) -> None:
    # The first time test_core_one is given the events that end its context
    # (at its first start, after LINE), lowimpact.monitoring.set_local_events
    # fails.  The collector must not take them as given: at the next start it
    # tries again, and the context ends when the test returns.  (Lines only:
    # with --branch, PY_RETURN is a measured event and ends it anyway.)
    real = monitoring.set_local_events
    failed = []

    def failing_once(tool, code, events):
        if (code is test_core_one.__code__ and not failed
                and events & monitoring.events.PY_RETURN
                and events & monitoring.events.PY_RESUME):
            failed.append(events)
            raise MemoryError("set_local_events failed (test)")
        return real(tool, code, events)

    collector = context_collector()
    monkeypatch.setattr(monitoring, "set_local_events", failing_once)
    collector.start()
    try:
        with pytest.raises(MemoryError):
            test_core_one()
        test_core_one(0)
        after = collector.context
        helper(1)
    finally:
        collector.stop()
        monkeypatch.undo()
    assert failed
    assert after is None
    codes, lines, _, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    first = helper.__code__.co_firstlineno
    # helper(0) in test_core_one's context, helper(1) in none.
    assert [(label, sorted(period.get(key, ()))) for label, period, _, _ in collector.periods()
            if key in period] == [("test_core_one", [first + 1, first + 3])]
    assert sorted(lines[key]) == [first + 1, first + 2]


def test_switch_context_returns_the_previous_context() -> None:
    collector = _cover.Collector(TOOL, only_here)
    collector.start()
    try:
        assert collector.switch_context("a") is None
        assert collector.switch_context("b") == "a"
        collector.pause()
        assert collector.switch_context("c") == "b"   # (from resume() on)
        collector.resume()
        assert collector.switch_context(None) == "c"
        assert collector.switch_context(None) is None
    finally:
        collector.stop()


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_restarted_collector_ends_test_contexts(branch: bool) -> None:
    # Between a collector's stop() and its start() again, another collector
    # on the same tool id (or anyone) set other local events on the test's
    # code object: the restarted collector gives its own again.
    first = context_collector(branch=branch)
    first.start()
    try:
        test_core_one(1)
        assert first.context is None
    finally:
        first.stop()
    other = _cover.Collector(TOOL, only_here)
    other.start()
    try:
        test_core_one(1)
    finally:
        other.stop()
    first.start()
    try:
        test_core_one(0)
        after = first.context
        helper(1)
    finally:
        first.stop()
    assert after is None
    codes, lines, _, _ = first.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    line = helper.__code__.co_firstlineno
    assert [(label, sorted(period.get(key, ()))) for label, period, _, _ in first.periods()
            if key in period] == [("test_core_one", [line + 1, line + 2]),
                                  ("test_core_one", [line + 1, line + 3])]
    assert sorted(lines[key]) == [line + 1, line + 2]


def test_a_failed_rearm_leaves_the_others_rearmed(monkeypatch) -> None:
    # A switch re-arms each code object that recorded something; when that
    # fails for one (here branchy, recorded first), the others still are.
    real = monitoring.set_local_events
    failed = []

    def failing_once(tool, code, events):
        if code is branchy.__code__ and events and not failed:
            failed.append(events)
            raise MemoryError("set_local_events failed (test)")
        return real(tool, code, events)

    collector = _cover.Collector(TOOL, only_here)
    collector.start()
    try:
        branchy(1)
        helper(1)
        monkeypatch.setattr(monitoring, "set_local_events", failing_once)
        with pytest.raises(MemoryError):
            collector.switch_context("after")
        monkeypatch.undo()
        helper(1)
        helper(0)
    finally:
        collector.stop()
        monkeypatch.undo()
    assert failed
    codes, lines, _, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    line = helper.__code__.co_firstlineno
    assert collector.context == "after"
    assert sorted(lines[key]) == [line + 1, line + 2, line + 3]


# -- test contexts of threads -------------------------------------------------


def test_core_calls(callback, x):
    helper(x)
    callback()


def test_core_raises():
    helper(1)
    raise ValueError("test_core_raises")


def test_core_generator():
    helper(0)
    yield
    helper(1)


test_core_calls.__test__ = test_core_raises.__test__ = test_core_generator.__test__ = False


def helper_periods(collector) -> list:
    codes, _, _, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    return [(label, sorted(period[key])) for label, period, _, _ in collector.periods()
            if key in period]


def test_test_contexts_are_per_thread() -> None:
    # As under coverage.py's C tracer (a tracer per thread, each starting
    # and ending its own test context): a test that starts in a thread
    # while the main thread's test runs starts its context, and its end
    # switches to none while the main thread's test goes on.  The thread
    # was started before the measuring.
    go, done = threading.Event(), threading.Event()
    in_both = []
    collector = _cover.Collector(TOOL, only_here, test_context=lambda frame: "%s@%s" % (
        frame.f_code.co_name, threading.current_thread().name))

    def in_thread():
        go.wait()
        test_core_calls(lambda: in_both.append(collector.test_threads), 0)
        done.set()

    def run_the_threads_test():
        go.set()
        done.wait()
        helper(1)

    thread = threading.Thread(target=in_thread, name="worker")
    thread.start()
    collector.start()
    try:
        test_core_calls(run_the_threads_test, 1)
        after = collector.context, collector.test_threads
    finally:
        collector.stop()
        go.set()
        thread.join()
    assert in_both == [2]
    assert after == (None, 0)
    line = helper.__code__.co_firstlineno
    # helper(1) in the main thread's test, helper(0) in the thread's, then
    # helper(1) in none: the main thread's test still runs.
    assert helper_periods(collector) == [("test_core_calls@MainThread", [line + 1, line + 2]),
                                         ("test_core_calls@worker", [line + 1, line + 3]),
                                         (None, [line + 1, line + 2])]


@pytest.fixture
def gc_switches_threads():
    """Garbage collection lets other threads run, often: as finalisers and
    gc.callbacks that run Python code may, on 3.11 at any allocation (in
    callbacks, in the middle of the engine's work); 3.12 and later collect
    only at the eval breaker."""

    def switch(phase, info):
        time.sleep(0)

    threshold = gc.get_threshold()
    gc.callbacks.append(switch)
    gc.set_threshold(50, *threshold[1:])
    try:
        yield
    finally:
        gc.callbacks.remove(switch)
        gc.set_threshold(*threshold)


def test_no_test_context_outlives_its_thread(gc_switches_threads) -> None:
    # Threads whose tests return, raise and yield, 100 of them, five at a
    # time (so that new threads reuse the memory of ended ones): each
    # thread's tests start their contexts (a context left behind by an
    # ended thread would keep a new one out of its tests), and none is
    # left when the threads have ended.  (On 3.11, before the test code's
    # context events stayed on while a switch re-arms it, 31 runs of 34
    # failed and 2 segfaulted, in the engine's update, fixed since.)
    asked = []
    collector = _cover.Collector(
        TOOL, only_here, test_context=lambda frame: asked.append(1) or frame.f_code.co_name)

    def in_thread(x):
        test_core_calls(lambda: None, x)
        with pytest.raises(ValueError):
            test_core_raises()
        for _ in test_core_generator():
            pass

    left = []
    collector.start()
    try:
        for _ in range(20):
            threads = [threading.Thread(target=in_thread, args=(x % 2,)) for x in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            left.append(collector.test_threads)
    finally:
        collector.stop()
    assert left == [0] * 20
    # Four starts a thread: the generator's resumption starts it again.
    assert len(asked) == 100 * 4


@contextlib.contextmanager
def thread_in_a_test(collector):
    """Starts `collector`, then a thread whose test_core_calls waits in its
    callback until the event given is set; stops the collector, then lets
    the thread end."""
    go, inside = threading.Event(), threading.Event()

    def wait():
        inside.set()
        go.wait()

    thread = threading.Thread(target=test_core_calls, args=(wait, 1))
    collector.start()
    try:
        thread.start()
        inside.wait()
        yield go, thread
    finally:
        collector.stop()
        go.set()
        thread.join()


def test_a_test_ending_while_its_code_is_rearmed(monkeypatch) -> None:
    # The main thread's test starts while a thread's test_core_calls runs:
    # the switch re-arms test_core_calls (it recorded lines in the thread's
    # context), and the thread's test returns in the middle of that.  Code
    # runs there whenever the re-arming calls Python code: on 3.11 any
    # allocation may collect garbage, and the finalisers and gc.callbacks
    # that runs may switch threads (here a Python wrapper does the switch).
    # The event that ends the thread's context must not be off meanwhile.
    code = test_core_calls.__code__
    real = monitoring.set_local_events
    collector = context_collector()
    with thread_in_a_test(collector) as (go, thread):

        def switching(tool, target, events):
            real(tool, target, events)
            if target is code and not go.is_set():
                go.set()
                thread.join()

        monkeypatch.setattr(monitoring, "set_local_events", switching)
        try:
            test_core_one()
        finally:
            monkeypatch.undo()
        go.set()
        thread.join()
        left = collector.test_threads
    assert left == 0
    line = helper.__code__.co_firstlineno
    # The thread's test ended in the switch to the main thread's context,
    # and switched to none (as under the C tracer) while that test goes on.
    assert helper_periods(collector) == [("test_core_calls", [line + 1, line + 2]),
                                         (None, [line + 1, line + 2])]


def test_stop_forgets_the_threads_in_tests() -> None:
    collector = context_collector()
    with thread_in_a_test(collector):
        running = collector.test_threads
    assert (running, collector.test_threads) == (1, 0)


def test_stop_and_start_inside_a_running_test() -> None:
    # stop() forgets the test contexts; started again inside the test, the
    # collector never saw that test start, as coverage.py's new C tracer
    # after Coverage.stop() and start() there: its end switches nothing
    # (under the C tracer, a function called after such a test returned is
    # recorded in the test's context), and the next test starts and ends
    # its own.
    collector = context_collector()
    inside = []

    def restart():
        collector.stop()
        collector.start()
        inside.append((collector.context, collector.test_threads))

    collector.start()
    try:
        test_core_calls(restart, 1)
        after_test = collector.context, collector.test_threads
        test_core_one(0)
        after_next = collector.context, collector.test_threads
    finally:
        collector.stop()
    assert inside == [("test_core_calls", 0)]
    assert (after_test, after_next) == (("test_core_calls", 0), (None, 0))
    line = helper.__code__.co_firstlineno
    assert helper_periods(collector) == [("test_core_calls", [line + 1, line + 2]),
                                         ("test_core_one", [line + 1, line + 3])]


def test_core_closed():
    try:
        helper(0)
        yield
    finally:
        helper(1)


test_core_closed.__test__ = False


def test_a_test_generator_thrown_into_starts_its_context_again() -> None:
    # close() in another thread: its finally block runs in its context
    # (started by PY_THROW, in that thread), which ends as it unwinds.
    collector = context_collector()
    collector.start()
    try:
        generator = test_core_closed()
        next(generator)
        between = collector.context
        thread = threading.Thread(target=generator.close)
        thread.start()
        thread.join()
        after = collector.context, collector.test_threads
    finally:
        collector.stop()
    assert (between, after) == (None, (None, 0))
    line = helper.__code__.co_firstlineno
    assert helper_periods(collector) == [("test_core_closed", [line + 1, line + 3]),
                                         ("test_core_closed", [line + 1, line + 2])]


def one_way(n, flip_at):
    total = 0
    for i in range(n):
        if i < flip_at:
            total += 1
        else:
            total -= 1
    return total


def test_a_branch_that_went_one_way_many_times_records_its_other_way():
    """A branch that always went the same way keeps reporting (the core
    answers repeats from a cache); when it goes the other way, and when a
    new period (context) starts, what it does is recorded."""
    collector = _cover.Collector(TOOL, lambda name, frame: name if name == __file__ else None,
                                 branch=True)
    collector.start()
    try:
        one_way(50, 50)             # only "i < flip_at"
        first = collector.switch_context("second")
        one_way(50, 50)             # the same way, in the new period
        one_way(50, 25)             # both ways
    finally:
        collector.stop()
    assert first is None
    codes, _, branches, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is one_way.__code__]
    ((label, _, before, _),) = collector.periods()
    assert label is None
    widths = lambda per_source: sorted(len(d) for d in per_source.values())  # noqa: E731
    # The for loop's two ways and the if's one; then both ways of each.
    assert widths(before[key]) == [1, 2]
    assert widths(branches[key]) == [2, 2]


@pytest.mark.parametrize("answers, asked", [
    ([None], 1),                     # no branch of it told: never asked again
    ([{}], 1),
    ([NotImplemented, None], 2),     # not known yet: asked again, then known
    ([NotImplemented] * 10, 6),      # two hot branches, asked every 4096 repeats
])
def test_implied_of_not_known_yet_is_asked_again(answers: list, asked: int) -> None:
    """implied_of (which `cover run` answers from the coverage.py process
    beside the program, once that process is ready) may answer
    NotImplemented: the branch is asked about again after 4096 more
    repeats, until an answer is cached for its code object.  (On 3.11 the
    engine stops each way of a branch once recorded: nothing repeats and
    nothing is asked.)"""
    calls = []

    def implied_of(code, filename):
        calls.append(code)
        return answers[min(len(calls), len(answers)) - 1]

    collector = _cover.Collector(TOOL, lambda name, frame: name if name == __file__ else None,
                                 branch=True, implied_of=implied_of)
    collector.start()
    try:
        one_way(10_000, 10_000)   # the loop's way and the if's, 64 + 2 * 4096 times and more
    finally:
        collector.stop()
    assert calls == [one_way.__code__] * (0 if sys.version_info[:2] == (3, 11) else asked)
    codes, _, branches, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is one_way.__code__]
    assert sorted(len(d) for d in branches[key].values()) == [1, 2]
