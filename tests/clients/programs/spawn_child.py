"""Run as a script and imported from ``python -c``: either way its module
code runs in a process whose coverage.py started at interpreter startup."""

import sys


class Accumulator:
    def __init__(self):
        self.parts = []

    def add(self, value):
        if value % 2:
            self.parts.append("odd%d" % value)
        else:
            self.parts.append(str(value))

    def joined(self):
        return ",".join(self.parts)


def work(n):
    acc = Accumulator()
    for i in range(n):
        acc.add(i * i)
    return acc.joined()


if __name__ == "__main__":
    print(work(int(sys.argv[1])))
