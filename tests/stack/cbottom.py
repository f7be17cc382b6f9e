"""Threads whose outermost Python frame is a generator's or a coroutine's,
resumed from C (_thread starts next() and send() directly, so no Python
frame is below them), for the stack reader's tests.  ``python cbottom.py``
prints "ready" once both are parked and waits until its stdin closes."""

import _thread
import sys
import threading

release = threading.Event()
parked = threading.Semaphore(0)


def generator():
    parked.release()
    release.wait()  # at: generator
    yield 1


async def coroutine():
    parked.release()
    release.wait()  # at: coroutine
    return 1


gen = generator()
coro = coroutine()
_thread.start_new_thread(next, (gen,))
_thread.start_new_thread(coro.send, (None,))
parked.acquire()
parked.acquire()
print("ready", flush=True)
sys.stdin.read()
release.set()
