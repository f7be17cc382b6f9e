"""Code objects made and freed all the time, for the sampler's tests of its
caches.  ``python churn.py SECONDS`` prints "ready", then for SECONDS makes
functions a_N, a_N+1, b_N+2 in turn, each from source compiled afresh (a
new code object, freed once called, whose memory a later one is likely to
take: the period of three makes both kinds take the same addresses), a_N
calling in_a() and b_N calling in_b(), which spin a little.  A sample that
shows a b_N under in_a(), or an a_N under in_b(), names a function that
was not on the stack."""

import sys
import time

SOURCE = {
    "a": "def a_%d(n):\n    return in_a(n)\n",
    "b": "def b_%d(n):\n    return in_b(n)\n",
}


def in_a(n):
    while n: n -= 1  # noqa: E701
    return n


def in_b(n):
    while n: n -= 1  # noqa: E701
    return n


def churn(deadline):
    i = 0
    while time.monotonic() < deadline:
        kind = "aab"[i % 3]
        namespace = {"in_a": in_a, "in_b": in_b}
        exec(SOURCE[kind] % i, namespace)
        namespace["%s_%d" % (kind, i)](5000)
        i += 1
    return i


print("ready", flush=True)
churn(time.monotonic() + float(sys.argv[1]))
