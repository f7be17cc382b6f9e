"""Branches that go one way many times in a row (more than the collector's
HOT_REPEATS) and the other way later or never: lowimpact cover stops such a
branch's events when some statement runs only after its other way, and
takes that way's arc from the lines; the arcs must still be those
coverage.py's C tracer records (tests/cover/test_oracle.py).  The other
programs' shapes are run hot too."""

import asyncio
import contextlib
import sys

import branch_shapes
import finally_shapes

if sys.version_info >= (3, 10):
    from match_shapes_py310 import match_shapes
else:
    match_shapes = None

HOT = 300


def loops(n):
    total = 0
    for i in range(n):
        total += i
    for i in range(n):
        if i == n - 1:
            break
    else:
        total = -1
    for i in range(n):
        if i < 0:
            break
    else:
        total += 1
    i = 0
    while i < n:
        i += 1
    else:
        total += 2
    while True:
        i -= 1
        if i <= 0:
            break
    return total


def late_if(i):
    hits = 0
    if i == HOT - 1:
        hits += 1
    if i < HOT - 1:
        hits += 2
    else:
        hits += 3
    if i == HOT - 1: hits += 4
    if (i >
            HOT * 2):
        hits = 0
    return hits


def never_if(i):
    if i < 0:
        return -1
    x = i if i >= 0 else -i
    return x and i or None


def comprehensions(n):
    evens = [x for x in range(n) if x % 2 == 0]
    big = {x: x for x in range(n) if x > n - 2}
    total = sum(x for x in range(n) if x >= 0)
    nested = [[y for y in range(3) if y != x] for x in range(n) if x < 2]
    return len(evens), big, total, nested


def try_in_loop(n):
    caught = 0
    for i in range(n):
        try:
            if i == n - 1:
                raise ValueError(i)
        except ValueError:
            caught += 1
        finally:
            caught += 0
    return caught


def with_in_loop(n):
    count = 0
    for i in range(n):
        with contextlib.suppress(KeyError):
            if i == n - 1:
                raise KeyError(i)
            count += 1
    return count


def generator(n):
    for i in range(n):
        if i % 1000 == 999:
            yield -i
        yield i


async def async_loop(n):
    async def numbers():
        for i in range(n):
            yield i
    total = 0
    async for i in numbers():
        if i > n:
            break
        total += i
    return total


def decorator(function):
    def wrapper(*args):
        if args and args[0] is None:
            return None
        return function(*args)
    return wrapper


@decorator
def decorated(i):
    return i + 1


def lambdas(n):
    pick = lambda x: x if x >= 0 else -x  # noqa: E731
    return [pick(i) for i in range(n)]


def main():
    loops(HOT)
    loops(1)
    for i in range(HOT):
        late_if(i)
        never_if(i)
        decorated(i)
    decorated(None)
    comprehensions(HOT)
    try_in_loop(HOT)
    with_in_loop(HOT)
    sum(generator(HOT))
    asyncio.run(async_loop(HOT))
    lambdas(HOT)
    if match_shapes is not None:
        for _ in range(HOT):
            match_shapes({"go": "north"})
        match_shapes([1, 2])
    for _ in range(100):
        branch_shapes.main()
        finally_shapes.main()


if __name__ == "__main__":
    main()
