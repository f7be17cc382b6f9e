"""A thread whose outermost Python frame is a generator's resumed from C
(as in cbottom.py), which calls back into Python through C (sorted()'s
key), for the stack reader's tests.  ``python cback.py`` prints "ready"
once the thread is parked and waits until its stdin closes."""

import _thread
import sys
import threading

release = threading.Event()
parked = threading.Semaphore(0)


def key(x):
    parked.release()
    release.wait()  # at: key
    return x


def generator():
    yield sorted([2, 1], key=key)  # at: generator


gen = generator()
_thread.start_new_thread(next, (gen,))
parked.acquire()
print("ready", flush=True)
sys.stdin.read()
release.set()
