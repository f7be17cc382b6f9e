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

# Known and not fixed (docs/STACK.md), at the highest rate: on 3.9/3.10 a
# thread looping over a generator shows the generator's frame alone,
# running, with no f_back, in two copies of the frame (1 in 4,000 to 1 in
# 100,000 samples, more the faster the sampler): as often as before the
# checks at times, so no bound tells a regression from it; xfail, not strict.
# Likewise genreuse from 3.11 on: a coroutine sent from C (3.11, which has no
# mark for a frame in a call) or a generator's frame read on its own (3.12;
# 3.13 takes the same path) under the other function: about 1 in 20,000 in
# review, but 27 of 66,453 (1 in 2,500, the rate before the checks) for a
# 3.11 target under CI's 3.10 sampler.
RESIDUAL = {(9, "genloop"), (10, "genloop"),
            (11, "genreuse"), (12, "genreuse"), (13, "genreuse")}

# Every other case is bounded rather than held to zero: the reader cannot
# tell a thread that made the same mixing twice, once in the copy and once
# in the second read (docs/STACK.md, "What can still go unnoticed"), and on
# 3.11 a coroutine sent from C, on 3.12 (3.13 has the same path) a
# generator's frame read on its own, show under the other function of
# genreuse about once in 20,000 kept samples at this rate (and 3.11
# alternate kept a leaf under the other's caller in 2 of 59,139 in review,
# a 3.13 sampler on a loaded 2-CPU machine).  CI runs these cases under
# each of five interpreters (125 runs of 7,000-100,000 kept samples here):
# held to zero, such a residual fails most CI runs.  Mixed kept
# samples are a Poisson count of mean k/20,000 (k kept); the bound
# 4 + k/5,000 is exceeded with probability under 1.4e-5 for any k (under
# 2e-3 that one of 125 runs fails by chance), while the rates before these
# checks (1 in 400 to 1 in 2,000 of alternate and genreuse) exceed it with
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
                     if (minor, kind) in RESIDUAL else [])
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
    if (minor, kind) in RESIDUAL:
        assert not mixed, (len(mixed), kept, mixed[:5])
    assert len(mixed) <= allowed(kept), (len(mixed), kept, mixed[:5])
    assert kept >= 500 and SEEN[kind] & set(seen), (kept, seen)
