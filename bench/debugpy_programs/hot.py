"""The program of bench/debugpy_bench.py: calls, most of them to one hot function
(fib).  It times its own work (wall and CPU time), so that starting the debugger is left out,
and prints the time and a checksum."""

import sys
import time


def unused(x):
    return x * 3  # at: other


def fib(n):
    if n < 0:
        raise ValueError(n)  # at: never
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class Vec:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def add(self, other):
        return Vec(self.x + other.x, self.y + other.y)


def work(n):
    total = Vec(0, 0)
    for i in range(n):
        total = total.add(Vec(i, fib(i % 15)))
    return total.x + total.y


start, cpu = time.perf_counter(), time.process_time()
result = work(int(sys.argv[1]))
print("elapsed %.6f cpu %.6f result %d"
      % (time.perf_counter() - start, time.process_time() - cpu, result))
