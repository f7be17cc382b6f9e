"""What a frame pays when it was already running as events came, on 3.9 and 3.10.

    python bench/running.py [--runs 7] [--n 2000000]
    python bench/running.py --callgrind [--n 200000]

Each cell is the median of --runs fresh processes (wall time of one loop of
--n iterations that calls a small function each time); with --callgrind,
the instructions (valgrind's callgrind) that the loop's --n more iterations
cost: each scenario runs at n and 2n iterations, and the difference is
divided by that of `off` (start-up and turning events on cancel out).
Scenarios:

  off        no events at all
  started    a breakpoint-style LINE event (local to the looping function,
             on a line never run; DISABLE from the others) turned on before
             the frame starts: it runs on its shadow
  reached    the same, turned on from inside the loop, at its first
             iteration: the frame was already running (3.9, 3.10: its
             thread's trace hook delivers the shadow's probes to it,
             running.c; 3.9 calls a thread's trace hook at the line events
             of all its frames, the helper's too)
  settrace   a settrace debugger's equivalent of `reached`: the loop's
             frame gets a local trace function from inside the loop
  other      `reached` in one thread while a second thread runs the loop
             from its start (on its shadow): the second thread's time
  other_started  the same with both loops started after the event was
             turned on (neither reached): the second thread's time
  busy_off, busy_reached  off and reached with a function of several
             lines called instead of the small one (what the frames that
             a reached frame calls pay)

With --callgrind, `other` and `other_started` count both threads.

On 3.11-3.13 the same scenarios measure the 3.11 engine and native
sys.monitoring.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

CHILD = r'''
import sys, threading, time
from lowimpact import monitoring as M

scenario, n = sys.argv[1], int(sys.argv[2])
E = M.events
TOOL = 3

def helper(x):
    return x + 1

def busy(x):
    for _ in range(8):
        x = x + 1
    return x

step = busy if scenario.startswith("busy_") else helper
scenario = scenario.replace("busy_", "")

def loop(n, turn_on):
    total = 0
    for i in range(n):
        if i == 1 and turn_on:
            on()
        total = step(total)
    if total < 0:
        total = -1      # the breakpoint's line: never run
    return total

def on():
    M.use_tool_id(TOOL, "bench")
    line = loop.__code__.co_firstlineno + 7
    M.register_callback(TOOL, E.LINE, lambda code, l: None if l == line else M.DISABLE)
    M.set_local_events(TOOL, loop.__code__, E.LINE)

def timed(turn_on):
    t = time.perf_counter()
    loop(n, turn_on)
    return time.perf_counter() - t

if scenario == "off":
    print(timed(False))
elif scenario == "started":
    on()
    print(timed(False))
elif scenario == "reached":
    print(timed(True))
elif scenario == "settrace":
    # What a settrace debugger does to reach the running loop (pdb's
    # set_trace): a trace function for it, and one for the frames it calls.
    breakpoint_line = loop.__code__.co_firstlineno + 7
    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == breakpoint_line:
            print("hit")
        return local
    def on():
        sys._getframe(1).f_trace = local
        sys.settrace(lambda frame, event, arg: None)
    print(timed(True))
else:
    # Two threads run the loop; the second is timed.
    go = threading.Event()
    result = []
    def second():
        go.wait()
        result.append(timed(False))
    t = threading.Thread(target=second)
    t.start()
    if scenario == "other":
        go_on = on
        def on_then_go():
            go_on()
            go.set()
        on = on_then_go
        loop(n * 3, True)
    else:
        on()
        go.set()
        loop(n * 3, False)
    t.join()
    print(result[0])
'''


#: The scenario each is compared with (else `off`).
BASE = {"other": "other_started", "busy_reached": "busy_off"}


def instructions(scenario: str, n: int, env: dict) -> int:
    """What callgrind counts for one child process."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, "-c", CHILD, scenario, str(n)],
                         env=dict(env, PYTHONHASHSEED="0"),
                         capture_output=True, text=True, check=True)
    return int(re.findall(r"Collected : (\d+)", out.stderr)[-1])


def counted(scenarios: list, n: int, env: dict) -> None:
    growth = {s: instructions(s, 2 * n, env) - instructions(s, n, env) for s in scenarios}
    print(f"Python {sys.version.split()[0]}, callgrind, instructions of n={n} more iterations")
    for s in scenarios:
        base = growth[BASE.get(s, "off")]
        print(f"{s:13} {growth[s] / n:8.1f} per iteration  x{growth[s] / base:5.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--n", type=int)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--only", nargs="+", help="these scenarios only (list their bases too)")
    args = parser.parse_args()
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    scenarios = ["off", "started", "reached", "settrace", "other_started", "other",
                 "busy_off", "busy_reached"]
    if args.only:
        scenarios = args.only
    if args.callgrind:
        counted(scenarios, args.n or 200_000, env)
        return
    args.n = args.n or 2_000_000
    times: dict = {s: [] for s in scenarios}
    for _ in range(args.runs):
        for s in scenarios:
            out = subprocess.run([sys.executable, "-c", CHILD, s, str(args.n)], env=env,
                                 capture_output=True, text=True, check=True)
            times[s].append(float(out.stdout))
    med = {s: statistics.median(v) for s, v in times.items()}
    print(f"Python {sys.version.split()[0]}, n={args.n}, median of {args.runs} runs")
    for s in scenarios:
        base = med[BASE.get(s, "off")]
        print(f"{s:10} {med[s] * 1e3:8.1f} ms  x{med[s] / base:5.2f}")


if __name__ == "__main__":
    main()
