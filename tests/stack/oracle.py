"""Targets whose possible stacks are known exactly, for checking that the
sampler never keeps a stack the target did not have.

    python oracle.py KIND SECONDS [TRACE]

prints "ready", then runs KIND for SECONDS, traced if TRACE says how
("line": sys.monitoring LINE events, 3.12+; "settrace": sys.settrace and
threading.settrace, a local trace function on every frame), where the
interpreter puts instrumented instructions over the ones the reader checks
(a return, a yield) and a callback's frame above the function traced.
CALLERS[KIND] maps each of
the kind's functions to the functions that may call it ("" for a thread's
outermost frame); a kept sample in which one of them has another caller,
or none, mixes two moments.  No library frame comes between a function
and the callers named here (threading's own frames may be below
``run_thread``; a coroutine's send(), a C call, shows no frame of its own).
Every kind makes frames take the addresses of frames of other calls all the
time: the point is to give a torn read every chance to look whole.
"""

import sys
import threading
import time

# --- genloop: a generator consumed by a loop; its caller must always show.


def gen(n):
    for i in range(n):
        yield i


def work(x):
    return x + 1


def consume():
    total = 0
    for x in gen(50):
        total += work(x)
    return total


def run_genloop(deadline):
    while time.monotonic() < deadline:
        for _ in range(100):
            consume()


# --- genreuse: generators (and coroutines) made where finished ones were:
# c1 drives f1's generators and k1's coroutines, c2 those of f2 and k2, in
# turn, so that each new generator object (its frame inside it) takes the
# memory of one the other function just freed.


def f1():
    yield 1
    yield 2


def f2():
    yield 1
    yield 2


async def k1():
    return 1


async def k2():
    return 2


def c1():
    n = 0
    for x in f1():
        n += x
    try:
        k1().send(None)
    except StopIteration:
        pass
    return n


def c2():
    n = 0
    for x in f2():
        n += x
    try:
        k2().send(None)
    except StopIteration:
        pass
    return n


def run_genreuse(deadline):
    while time.monotonic() < deadline:
        for _ in range(100):
            c1()
            c2()


# --- alternate: calls whose frames take each other's addresses.


def alpha_leaf(n):
    return n + 1


def beta_leaf(n):
    return n + 2


def alpha(n):
    return alpha_leaf(n)


def beta(n):
    return beta_leaf(n)


def run_alternate(deadline):
    n = 0
    while time.monotonic() < deadline:
        for _ in range(100):
            n = alpha(n)
            n = beta(n)


# --- threads: threads that start and end all the time, each running one of
# two call chains; the main thread starts and joins them.


def t1_leaf(n):
    while n:
        n -= 1


def t2_leaf(n):
    while n:
        n -= 1


def t1(n):
    t1_leaf(n)
    for x in f1():
        t1_leaf(x)


def t2(n):
    t2_leaf(n)
    for x in f2():
        t2_leaf(x)


def run_thread(which):
    for _ in range(20):
        which(200)


def run_threads(deadline):
    while time.monotonic() < deadline:
        workers = [threading.Thread(target=run_thread, args=(t1 if i % 2 else t2,))
                   for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


MAIN = {"<module>": {""}}
CALLERS = {
    "genloop": dict(MAIN, run_genloop={"<module>"}, consume={"run_genloop"},
                    gen={"consume"}, work={"consume"}),
    "genreuse": dict(MAIN, run_genreuse={"<module>"}, c1={"run_genreuse"},
                     c2={"run_genreuse"}, f1={"c1"}, f2={"c2"}, k1={"c1"}, k2={"c2"}),
    "alternate": dict(MAIN, run_alternate={"<module>"}, alpha={"run_alternate"},
                      beta={"run_alternate"}, alpha_leaf={"alpha"}, beta_leaf={"beta"}),
    # (run_thread's callers are threading's: not checked.)
    "threads": dict(MAIN, run_threads={"<module>"}, t1={"run_thread"}, t2={"run_thread"},
                    t1_leaf={"t1"}, t2_leaf={"t2"}, f1={"t1"}, f2={"t2"}),
}


def mixed(kind, names):
    """Why the stack `names` (outermost first, bare function names) cannot
    be one of kind's, or None if it can."""
    callers = CALLERS[kind]
    for i, name in enumerate(names):
        if name in callers and (names[i - 1] if i else "") not in callers[name]:
            return "%s under %s" % (name, names[i - 1] if i else "nothing")
    if names and names[0] not in ("<module>", "_bootstrap"):
        return "a thread starting at %s" % names[0]
    return None


def on_event(*args):
    """The trace function and the LINE callback: keeps every event coming
    (returns itself, which sys.monitoring takes as anything but DISABLE)."""
    return on_event


def trace(how):
    if how == "line":
        monitoring = sys.monitoring
        monitoring.use_tool_id(monitoring.DEBUGGER_ID, "oracle")
        monitoring.register_callback(monitoring.DEBUGGER_ID, monitoring.events.LINE, on_event)
        monitoring.set_events(monitoring.DEBUGGER_ID, monitoring.events.LINE)
    elif how == "settrace":
        threading.settrace(on_event)
        sys.settrace(on_event)
    else:
        raise SystemExit("unknown TRACE %r" % how)


if __name__ == "__main__":
    kind = sys.argv[1]
    if len(sys.argv) > 3:
        trace(sys.argv[3])
    print("ready", flush=True)
    globals()["run_" + kind](time.monotonic() + float(sys.argv[2]))
