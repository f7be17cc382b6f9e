"""Generators, coroutines, async code and exceptions crossing frames."""

import asyncio
import contextlib
import sys

if sys.version_info >= (3, 11):
    # `except*` is 3.11 syntax: that part lives in a file 3.10 never compiles.
    from gen_async_groups_py311 import group
else:
    group = None


def countdown(n):
    while n > 0:
        received = yield n
        if received is not None:
            n = received
        else:
            n -= 1
    return "liftoff"


def delegate():
    result = yield from countdown(2)
    yield result


def guarded():
    try:
        yield "first"
        yield "second"
    except RuntimeError:
        yield "recovered"
    finally:
        cleanup.append("guarded closed")


cleanup = []


@contextlib.contextmanager
def managed(name):
    cleanup.append("enter " + name)
    try:
        yield name
    except KeyError:
        cleanup.append("suppressed in " + name)
    finally:
        cleanup.append("exit " + name)


class Suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ZeroDivisionError


def deep(level):
    if level == 0:
        raise LookupError("bottom")
    try:
        return deep(level - 1)
    finally:
        cleanup.append("unwound %d" % level)


def reraiser():
    try:
        deep(2)
    except LookupError as exc:
        raise ValueError("wrapped") from exc


def use_generators():
    gen = countdown(3)
    values = [next(gen), gen.send(5), next(gen)]
    values.extend(delegate())
    g = guarded()
    values.append(next(g))
    values.append(g.throw(RuntimeError("thrown")))
    g.close()
    values.append(sum(x * x for x in range(4)))
    with managed("a") as name:
        values.append(name)
    with managed("b"):
        raise KeyError("swallowed")
    with Suppress():
        values.append(1 / 0)
    try:
        reraiser()
    except ValueError as exc:
        values.append(type(exc.__cause__).__name__)
    if group is not None:
        group(cleanup)
    return values


async def ticker(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


class AsyncResource:
    async def __aenter__(self):
        await asyncio.sleep(0)
        return "resource"

    async def __aexit__(self, kind, value, tb):
        cleanup.append("async exit")
        return False


async def worker(name, delay):
    await asyncio.sleep(delay)
    if name == "bad":
        raise OSError("worker failed")
    return name.upper()


async def amain():
    seen = [i async for i in ticker(3)]
    async with AsyncResource() as res:
        seen.append(res)
    results = await asyncio.gather(
        worker("one", 0), worker("bad", 0), return_exceptions=True
    )
    seen.extend(type(r).__name__ for r in results)
    try:
        await asyncio.wait_for(worker("slow", 10), timeout=0.001)
    except asyncio.TimeoutError:
        seen.append("timeout")
    return seen


def manual_coroutine():
    async def simple():
        return 42

    coro = simple()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value


print(use_generators())
print(asyncio.run(amain()))
print(manual_coroutine(), cleanup)
