"""A busy program for the sampler's tests: ``python busy.py SECONDS`` prints
"ready", then spins in spin() for SECONDS and exits with status 3."""

import sys
import threading  # noqa: F401  (threading names the main thread: the tests look for it)
import time


def spin(deadline):
    n = 0
    while time.monotonic() < deadline: n += 1  # at: spin  # noqa: E701
    return n


def main():
    print("ready", flush=True)
    spin(time.monotonic() + float(sys.argv[1]))  # at: main


main()  # at: module
sys.exit(3)
