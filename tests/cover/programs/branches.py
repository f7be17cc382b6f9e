"""Branchy code for comparing lowimpact cover with coverage.py's C tracer.

Each construct runs with inputs that leave some directions untaken, so that
missing branches are compared as well as executed ones.
"""

import asyncio
import functools
import sys

if sys.version_info >= (3, 10):
    # `match` is 3.10 syntax: it lives in a file 3.9 never compiles.
    from match_shapes_py310 import matching
else:
    matching = None


def conditions(a, b, c):
    if a and b:
        return "ab"
    elif a or c:
        result = "a|c"
    else:
        result = None
    if (a
            and not b
            and c):
        result = "multi-line"
    value = 1 if a else 2
    flags = [x for x in (a, b, c) if x]
    if not flags: return value
    return result


def loops(n):
    total = 0
    for i in range(n):
        if i == 3:
            break
        total += i
    else:
        total = -total
    while n > 0:
        n -= 1
        if n == 100:
            continue
    else:
        total += 1
    while True:
        total += 1
        if total > 5:
            break
    return total


def exceptions(x):
    try:
        if x:
            raise ValueError(x)
    except ValueError as exc:
        message = str(exc)
    else:
        message = "none"
    finally:
        done = True
    try:
        assert x != 3, "three"
    except AssertionError:
        message += "!"
    return message, done


def gen(n):
    for i in range(n):
        if i % 2:
            yield i
    yield from range(2)


async def agen(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def amain():
    return [i async for i in agen(3) if i]


def decorate(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args)
    return wrapper


@decorate
def recurse(n):
    return n if n < 2 else recurse(n - 1) + recurse(n - 2)


def common_prefix(words):
    # The inner loop always ends by its break: its exhaustion never runs.
    prefix = None
    for word in words:
        if prefix is None:
            prefix = word
        else:
            for i, (x, y) in enumerate(zip(prefix, word + "!")):
                if x != y:
                    prefix = prefix[:i]
                    break
    return prefix


class OneLine: pass
class Method:
    def m(self): return 1
    def never(self): return 2


with open(__file__, encoding="utf-8") as handle:
    first = handle.readline()

for args in [(1, 1, 0), (1, 0, 1), (0, 0, 0)]:
    conditions(*args)
loops(2)
loops(6)
exceptions(0)
exceptions(3)
if matching is not None:
    for command in ["go north", "stop"]:
        matching(command)
list(gen(4))
asyncio.run(amain())
recurse(6)
common_prefix(["abc", "abd", "b"])
Method().m()
lam = lambda x: x and x + 1
lam(0)
print("done")
