"""A sampling profiler that reads another process's stacks without pausing it.

``python -m lowimpact sample PID`` (or ``-- script.py args`` to start one)
takes snapshots of every thread's Python stack at a fixed rate (default
100 Hz), counts identical stacks and writes them as

- ``collapsed``: one line per stack, frames outermost first separated by
  ``;``, then the count (the format of Brendan Gregg's flamegraph.pl, which
  py-spy writes too): ``main (app.py:10);work (app.py:4) 37``;
- ``speedscope``: speedscope's JSON file format, one sampled profile per
  thread (https://www.speedscope.app);
- ``svg``: a flame graph, drawn by this module.

The target runs on while it is read; a snapshot that raced with it (a call
or return while a thread's frames were read) is detected and read again at
once, up to eight reads, then dropped; torn reads and dropped samples are
counted.  A summary of samples taken, dropped and the rate
achieved goes to stderr.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, TextIO, Tuple

from lowimpact.tools import flame
from lowimpact.tools.stack import attach, thread_name

try:
    from lowimpact._stack import sleep as _sleep
except ImportError:  # pragma: no cover - not Linux, or not built
    _sleep = time.sleep

__all__ = ["Profile", "FORMATS", "sample", "write_collapsed", "write_speedscope", "write_svg",
           "write_profile"]

FORMATS = ("collapsed", "speedscope", "svg")

#: Samples are due at fixed times (start + k / rate).  One taken late (the
#: sampler waited for a CPU, or a read was slow) does not move the ones after
#: it: those missed are made up at up to CATCH_UP times the rate, never back
#: to back, so that a short wait does not lower the rate achieved; those due
#: more than BEHIND_AT_MOST seconds ago are given up.  (At load average 22
#: on 2 CPUs a sleep of 1 ms ended more than 1 ms late in 30% of the sleeps,
#: by 2.4 ms on average.)  Samples made up are of a later moment than the
#: one they stand for, and one taken while the target waits for a CPU sees
#: what the last one saw: made up four times as fast and 0.25 s back, 4-56%
#: of the samples of a 3.11 target at 10 kHz were dropped in five runs
#: (every read torn by a target stopped mid-call) against 1.5-2.5% without
#: making up, at load average 34.
CATCH_UP = 2
BEHIND_AT_MOST = 0.1

Frame = Tuple[str, str, int]


class Profile(NamedTuple):
    """What a sampling run gathered."""

    pid: int
    #: {(thread key, frame ids outermost first): samples}
    counts: Dict[Tuple[int, Tuple[int, ...]], int]
    #: frame id -> (filename, name, line)
    frames: List[Frame]
    #: thread key (kernel tid) -> the thread's name: threading's where it
    #: could be read, else the kernel's
    thread_names: Dict[int, str]
    taken: int
    #: reads found torn (each made again at once) and samples dropped
    #: because every read of theirs was torn
    torn: int
    dropped: int
    elapsed: float
    rate: float
    #: CPU time the sampler spent, in seconds
    cpu: float


def sample(pid: int, rate: float = 100.0, duration: Optional[float] = None,
           stop: Optional[Callable[[], bool]] = None) -> Profile:
    """Sample process *pid* at *rate* Hz for *duration* seconds (None: until
    it exits, *stop* returns true, or KeyboardInterrupt)."""
    reader = attach(pid)
    period = 1.0 / rate
    counts: Dict[Tuple[int, Tuple[int, ...]], int] = {}
    names: Dict[int, str] = {}
    #: threading's names, read when a thread is first seen
    python_names: Dict[int, str] = {}
    cpu0 = time.process_time()
    clock = time.perf_counter
    start = clock()
    deadline = None if duration is None else start + duration
    #: when the next sample is due, and the earliest it may be taken
    due = earliest = start
    take = reader.sample
    try:
        while True:
            now = clock()
            if deadline is not None and now >= deadline:
                break
            at = max(due, earliest)
            if now < at:
                _sleep(at - now)
                now = clock()
            due = max(due + period, now - BEHIND_AT_MOST)
            earliest = now + period / CATCH_UP
            try:
                snapshot = take()
            except ProcessLookupError:
                break
            if snapshot is not None:
                new_thread = False
                for key in snapshot:
                    counts[key] = counts.get(key, 0) + 1
                    if key[0] not in names:
                        new_thread = True
                        names[key[0]] = thread_name(pid, key[0]) or str(key[0])
                if new_thread:
                    try:
                        python_names.update(reader.thread_names())
                    except ProcessLookupError:
                        break
            if stop is not None and stop():
                break
    except KeyboardInterrupt:
        pass
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    # A thread first seen before threading registered it has its name now,
    # if it still runs.
    # (Best effort: the profile is written with the kernel's names if the
    # process is gone or cannot be read any more.)
    if any(key not in python_names for key in names):
        try:
            python_names.update(reader.thread_names())
        except (OSError, RuntimeError):
            pass
    names.update(python_names)
    frames = []
    while True:
        try:
            frames.append(reader.frame(len(frames)))
        except IndexError:
            break
    return Profile(pid, counts, frames, names, reader.samples_taken, reader.samples_torn,
                   reader.samples_dropped, elapsed, rate, cpu)


def _label(frame: Frame) -> str:
    filename, name, line = frame
    return "%s (%s:%d)" % (name, filename, line)


def _stacks(profile: Profile) -> Dict[Tuple[str, ...], int]:
    """Counts per stack of labels (threads merged, as py-spy does by default)."""
    merged: Dict[Tuple[str, ...], int] = {}
    for (_thread, ids), n in profile.counts.items():
        if not ids:
            continue
        key = tuple(_label(profile.frames[i]) for i in ids)
        merged[key] = merged.get(key, 0) + n
    return merged


def write_collapsed(profile: Profile, stream: TextIO) -> None:
    """Brendan Gregg's collapsed stacks: ``frame;frame;frame count``."""
    flame.write_collapsed(_stacks(profile), stream)


def write_speedscope(profile: Profile, stream: TextIO) -> None:
    """speedscope's file format: a sampled profile per thread."""
    shared = [{"name": name, "file": filename, "line": line}
              for filename, name, line in profile.frames]
    per_thread: Dict[int, List[Tuple[Tuple[int, ...], int]]] = {}
    for (thread, ids), n in sorted(profile.counts.items()):
        if ids:
            per_thread.setdefault(thread, []).append((ids, n))
    interval = 1.0 / profile.rate
    profiles = []
    for thread, entries in sorted(per_thread.items()):
        weights = [n * interval for _ids, n in entries]
        profiles.append({
            "type": "sampled",
            "name": "%s (thread %d)" % (profile.thread_names.get(thread, thread), thread),
            "unit": "seconds",
            "startValue": 0,
            "endValue": sum(weights),
            "samples": [list(ids) for ids, _n in entries],
            "weights": weights,
        })
    json.dump({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": shared},
        "profiles": profiles,
        "name": "lowimpact sample of process %d" % profile.pid,
        "activeProfileIndex": 0,
        "exporter": "lowimpact",
    }, stream)
    stream.write("\n")


def write_svg(profile: Profile, stream: TextIO, width: int = 1200) -> None:
    """A flame graph: callers below, callees above, widths by samples."""
    flame.write_svg(_stacks(profile), stream, title="lowimpact sample: process %d" % profile.pid,
                    unit="samples", width=width)


def write_profile(profile: Profile, fmt: str, stream: TextIO) -> None:
    """Write *profile* in format *fmt* (one of FORMATS)."""
    {"collapsed": write_collapsed, "speedscope": write_speedscope,
     "svg": write_svg}[fmt](profile, stream)


def summary(profile: Profile) -> str:
    """One line: samples taken, dropped, achieved and requested rate, CPU."""
    achieved = profile.taken / profile.elapsed if profile.elapsed > 0 else 0.0
    dropped = 100.0 * profile.dropped / profile.taken if profile.taken else 0.0
    per_sample = 1e6 * profile.cpu / profile.taken if profile.taken else 0.0
    return ("%d samples in %.2f s (%.1f Hz of %.0f Hz requested), %d dropped (%.2f%%; "
            "%d torn reads, each read again), sampler CPU %.1f us per sample"
            % (profile.taken, profile.elapsed, achieved, profile.rate, profile.dropped,
               dropped, profile.torn, per_sample))


def default_output(fmt: str) -> str:
    """The file written when no -o is given."""
    return {"collapsed": "profile.txt", "speedscope": "profile.speedscope.json",
            "svg": "profile.svg"}[fmt]


def wait_for_python(pid: int, timeout: float = 10.0) -> None:
    """Wait until a just-started process is a readable CPython (its runtime
    mapped and its interpreter running); raise what attach() raises if not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader = attach(pid)
            if reader.sample():
                return
        except (OSError, RuntimeError):
            if time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def script_command(python: str, argv: Sequence[str]) -> List[str]:
    """The command that runs ``script.py args`` (or ``-m module args``)."""
    return [python] + list(argv)

