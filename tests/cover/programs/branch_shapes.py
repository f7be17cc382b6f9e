"""Many shapes of branches, each run with inputs that leave some directions
untaken: the arcs lowimpact cover derives from BRANCH events must be those
coverage.py's C tracer records (tests/cover/test_oracle.py)."""

import asyncio
import contextlib
import sys

if sys.version_info >= (3, 11):
    # `except*` is 3.11 syntax: the shape lives in a file 3.10 never compiles.
    from exception_groups_py311 import exception_groups
else:
    exception_groups = None

if sys.version_info >= (3, 10):
    # `match` is 3.10 syntax: the shapes live in a file 3.9 never compiles.
    from match_shapes_py310 import match_shapes
else:
    match_shapes = None


def if_chain(x):
    if x < 0:
        sign = -1
    elif x == 0:
        sign = 0
    elif x > 100:
        sign = 2
    else:
        sign = 1
    if x:
        pass
    if (x > 5 and
            x < 50 or
            x == -3):
        sign *= 10
    return sign


def conditions(a, b, c):
    value = a if b else c
    both = a and b
    either = a or b or c
    chained = 0 < a < 10 <= b
    negated = not a
    if (n := len(str(a))) > 1:
        value = n
    if a is None or b is not None:
        value = None
    return value, both, either, chained, negated


def while_shapes(n):
    total = 0
    while n > 0:
        n -= 1
        if n == 7:
            continue
        if n == 99:
            break
        total += n
    else:
        total = -total
    while True:
        total += 1
        if total > 3:
            break
    i = 0
    while i < 3 and total:
        i += 1
    return total


def for_shapes(items):
    found = None
    for item in items:
        if item == "stop":
            break
        if item is None:
            continue
        found = item
    else:
        found = "all"
    for _ in ():
        found = "never"
    for i, j in zip(range(3), range(3)):
        for k in range(i):
            if j == k:
                break
        else:
            continue
    return found


def try_shapes(x):
    try:
        if x == 1:
            raise ValueError("one")
        if x == 2:
            raise KeyError("two")
        result = 10 // x
    except ValueError:
        result = "value"
    except (KeyError, TypeError) as exc:
        result = type(exc).__name__
    except ZeroDivisionError:
        result = "zero"
    else:
        result = "ok %s" % result
    finally:
        x = None
    for i in range(3):
        try:
            if i == 1:
                continue
            if i == 5:
                break
        finally:
            x = i
    return result, x


def return_in_finally(x):
    try:
        if x:
            return "try"
    finally:
        if x == 2:
            x = 0
    return "after"


class Suppressing:
    def __init__(self, suppress):
        self.suppress = suppress

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.suppress


def with_shapes(fail, suppress):
    with Suppressing(suppress) as s, contextlib.nullcontext():
        if fail:
            raise RuntimeError("inside with")
        value = s.suppress
    return "after with"


def comprehensions(n):
    squares = [i * i for i in range(n) if i % 2]
    pairs = {i: j for i in range(n) for j in range(i) if j}
    unique = {x for x in squares if x > 10 or x == 1}
    total = sum(x for x in range(n) if x not in unique)
    nested = [[y for y in range(x) if y] for x in range(n) if x != 2]
    return squares, pairs, unique, total, nested


def lambdas(values):
    key = lambda v: -v if v > 0 else v  # noqa: E731
    pick = lambda v: v and v > 1  # noqa: E731
    return sorted(values, key=key), [pick(v) for v in values]


def generators(n):
    def evens(limit):
        for i in range(limit):
            if i % 2 == 0:
                yield i
        if limit > 100:
            yield -1

    def delegating(limit):
        yield from evens(limit)
        result = yield "end"
        if result:
            yield result

    gen = delegating(n)
    out = list(gen)
    return out, list(evens(0))


async def ticker(n):
    for i in range(n):
        if i == 99:
            return
        await asyncio.sleep(0)
        yield i


class AsyncContext:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def async_shapes(n):
    total = 0
    async for value in ticker(n):
        if value % 2:
            total += value
    else:
        total = -total
    async with AsyncContext():
        if n > 10:
            total = 0
    results = [v async for v in ticker(n) if v]
    try:
        await asyncio.wait_for(asyncio.sleep(0), 1 if n else 2)
    except asyncio.TimeoutError:
        total = None
    return total, results


def decorated(flag):
    def decorator(func):
        return func if flag else (lambda: "replaced")

    @decorator
    def inner():
        return "inner"

    return inner()


class Body:
    if True:
        attribute = 1
    else:
        attribute = 2
    for name in ("a", "b"):
        if name == "z":
            break

    def method(self, x):
        return [x] if x else []


def main():
    for x in (-4, 0, 7, 30):
        if_chain(x)
    conditions(1, 0, None)
    conditions(22, 3, 4)
    conditions(0, None, 0)
    while_shapes(9)
    while_shapes(0)
    for_shapes(["a", None, "b"])
    for_shapes(["stop"])
    for x in (0, 1, 2, 3):
        try_shapes(x)
    return_in_finally(0)
    return_in_finally(2)
    with_shapes(False, False)
    with_shapes(True, True)
    try:
        with_shapes(True, False)
    except RuntimeError:
        pass
    if match_shapes is not None:
        for command in ({"go": "north"}, {"go": "back"}, [1, 2], [1, 2, 3], "quit", 2, None, 4.5):
            match_shapes(command)
    comprehensions(6)
    lambdas([3, -1, 0, 2])
    generators(5)
    asyncio.run(async_shapes(5))
    asyncio.run(async_shapes(0))
    if exception_groups is not None:
        exception_groups(0)
        exception_groups(1)
    decorated(True)
    decorated(False)
    Body().method(0)


if __name__ == "__main__":
    main()
