"""The sampler keeps no stack the target never had: oracle.py's targets,
whose possible stacks are known, sampled as fast as the reader goes with
the target on one CPU and the sampler on another (where reads race the
target the most), on CPython 3.9-3.13."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from . import oracle
from .conftest import HERE, MINORS, find_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the stack reader reads Linux processes")

ORACLE = os.path.join(HERE, "oracle.py")
SECONDS = 2.0

# Functions each kind must be seen in (one of them at least, anywhere in
# a kept stack): the calls whose frames take each other's addresses,
# without which the run would check nothing.
SEEN = {kind: set(callers) - {"<module>", "run_" + kind}
        for kind, callers in oracle.CALLERS.items()}

# Known and not fixed (docs/STACK.md), at the highest rate: on 3.11 a
# coroutine sent from C (k1().send(None) in genreuse) shows under the other
# function that sends one (3.11 has no mark for a frame in a call, and the
# coroutine's frame is read apart from its caller's): 1 in 31,000 samples
# under a 3.10 sampler in this stop (16 of 502,353), 27 of 66,453 in an
# earlier CI run; xfail, not strict.  (3.9/3.10 genloop, a generator's frame
# alone, was here: now 1 in 170,000 to 1 in 600,000, bounded below like the
# rest.)  On 3.12/3.13 genreuse shows a generator's frame, read on its own,
# under the other function ("f1 under c2"): 1 in 830,000 or none under load
# in this stop's review, but 15 of 44,476 from a 3.13 target (3.11 sampler)
# in its last CI on a quiet machine.  Under settrace, a 3.11 target's genloop
# shows its generator alone under the trace function ("gen under nothing:
# gen;on_event") in about 1 of 3,000 kept samples once the machine is quiet
# enough for the highest rate (3 of 4 runs over the bound with 3.10 and 3.11
# samplers at the end of this stop; not yet analysed).
RESIDUAL = {(11, "genreuse", None), (12, "genreuse", None), (13, "genreuse", None),
            (11, "genloop", "settrace")}

# Every other case is bounded rather than held to zero: the reader cannot
# tell a thread that made the same mixing twice, once in the copy and once
# in the second read (docs/STACK.md, "What can still go unnoticed"), which
# this stop measured at the highest rate as 3 of 696,885 (3.9 genloop),
# 1 of 596,154 (3.10 genloop), 1 of 522,808 (3.12 alternate), 1 of 489,256
# (3.13 alternate under LINE) and 10 of 334,781 (3.13 genreuse under LINE;
# 3.11 alternate kept a leaf under the other's caller in 2 of 59,139 in an
# earlier review).  CI runs these cases under each of five interpreters
# (about 170 runs of 7,000-100,000 kept samples here): held to zero, such a
# residual fails some CI runs.  Mixed kept samples are a Poisson count of
# mean at most k/20,000 (k kept); the bound 4 + k/5,000 is exceeded with
# probability under 1.4e-5 for any k (under 3e-3 that one of 170 runs fails
# by chance), while the rates before the checks of the last stops (1 in 400
# to 1 in 2,000 of alternate and genreuse, 1 in 3,200 of 3.9 genloop, 1 in
# 1,500 to 1 in 8,000 of 3.12/3.13 alternate under LINE) exceed it with
# probability above 0.98 at 1 in 400 from k = 5,000 on, and at 1 in 2,000
# from k = 50,000 on (at k = 20,000: 0.67).
def allowed(kept: int) -> int:
    return 4 + kept // 5000


# Traced targets (oracle.py's TRACE), where 3.12+ put instrumented
# instructions over the returns and yields the reader looks for: a kind
# whose leaves return all the time and one whose generator yields.
TRACED = ("alternate", "genloop")


def params():
    for minor in MINORS:
        traces = ["settrace"] + (["line"] if minor >= 12 else [])
        cases = [(kind, None) for kind in sorted(oracle.CALLERS)]
        cases += [(kind, trace) for trace in traces for kind in TRACED]
        for kind, trace in cases:
            marks = ([pytest.mark.xfail(reason="known torn read kept, not fixed", strict=False)]
                     if (minor, kind, trace) in RESIDUAL else [])
            yield pytest.param(minor, kind, trace, marks=marks,
                               id="3.%d-%s%s" % (minor, kind, "-" + trace if trace else ""))


@pytest.mark.parametrize("minor,kind,trace", list(params()))
def test_no_stack_the_target_never_had(minor, kind, trace):
    from lowimpact import _stack

    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    cpus = sorted(os.sched_getaffinity(0))
    apart = len(cpus) >= 2
    child = subprocess.Popen(
        [python, ORACLE, kind, "60"] + ([trace] if trace else []),
        stdout=subprocess.PIPE, text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpus[0]})) if apart else None)
    mixed, seen = [], Counter()
    try:
        assert child.stdout.readline() == "ready\n"
        reader = _stack.Reader(child.pid)
        if apart:
            os.sched_setaffinity(0, {cpus[1]})
        try:
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                sample = reader.sample()
                for _thread, ids in sample or ():
                    names = [reader.frame(i)[1].rsplit(".", 1)[-1] for i in ids]
                    why = oracle.mixed(kind, names)
                    if why:
                        mixed.append("%s: %s" % (why, ";".join(names)))
                    seen.update(names)
        finally:
            os.sched_setaffinity(0, cpus)
    finally:
        child.kill()
        child.wait()
    kept = reader.samples_taken - reader.samples_dropped
    if (minor, kind, trace) in RESIDUAL:
        assert not mixed, (len(mixed), kept, mixed[:5])
    assert len(mixed) <= allowed(kept), (len(mixed), kept, mixed[:5])
    assert kept >= 500 and SEEN[kind] & set(seen), (kept, seen)
