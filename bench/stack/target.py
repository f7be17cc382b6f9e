"""A CPU-bound target for the sampler benchmark: recursive calls, a loop of
string work and a generator, for a fixed number of rounds.

    python target.py ROUNDS [WAIT]

sleeps WAIT seconds (for a sampler to attach), prints "start", runs the
rounds and prints the time they took and the CPU time the target used for
them (its own measures of how much a sampler slows it)."""

import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def words(n):
    for i in range(n):
        yield "w%d" % (i % 97)


def text(n):
    counts = {}
    for w in words(n):
        counts[w] = counts.get(w, 0) + 1
    return len(counts)


def round_():
    return fib(18) + text(3000)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    # Time for a sampler to attach before the measured part.
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    print("start", flush=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        round_()
    print("%.6f %.6f" % (time.perf_counter() - start, time.process_time() - start_cpu),
          flush=True)


if __name__ == "__main__":
    main()
