"""A target whose leaves take each other's place: main() calls alpha() and
beta() in turn, each of which calls its own leaf, so alpha_leaf's and
beta_leaf's frames (and alpha's and beta's) lie at the same addresses one
call after the other.  A sample that shows beta above alpha_leaf, or alpha
above beta_leaf, mixes two moments.

    python alternate.py SECONDS
"""

import sys
import time


def alpha_leaf(n):
    return n + 1


def beta_leaf(n):
    return n + 2


def alpha(n):
    return alpha_leaf(n)


def beta(n):
    return beta_leaf(n)


def main(deadline):
    n = 0
    while time.monotonic() < deadline:
        for _ in range(1000):
            n = alpha(n)
            n = beta(n)
    return n


if __name__ == "__main__":
    print("ready", flush=True)
    main(time.monotonic() + float(sys.argv[1]))
