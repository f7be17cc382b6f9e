"""Generators, generator expressions, send/throw/close and coroutines."""

import types


def count_up(n):
    for i in range(n):
        yield i * 2


def echo():
    received = []
    try:
        while True:
            value = yield len(received)
            received.append(value)
    except KeyError:
        yield "thrown"
    finally:
        received.clear()


def delegate(n):
    yield from count_up(n)
    return (yield "last")


@types.coroutine
def pause():
    yield "paused"


async def worker(n):
    total = 0
    for i in range(n):
        await pause()
        total += i
    return total


def drive(coro):
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.value


def main():
    sum(count_up(50))
    list(x + 1 for x in count_up(10))
    e = echo()
    next(e)
    for word in ("a", "b", "c"):
        e.send(word)
    e.throw(KeyError)
    e.close()
    list(delegate(5))
    drive(worker(25))


main()
