"""The call-heavy workload: nothing but tiny Python calls (recursive fib)
and a few built-in calls, the worst case for a deterministic profiler."""

import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main(n):
    total = 0
    for i in range(n - 5, n + 1):
        total += fib(i) + len(str(i))
    return total


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 24))
