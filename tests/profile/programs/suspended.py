"""A generator suspended for a long time between resumptions: the time it
is suspended is its caller's, not its own."""

import time


def ticks(n):
    for i in range(n):
        yield i


def main():
    for _ in ticks(4):
        time.sleep(0.05)


main()
