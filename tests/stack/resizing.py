"""threading._active resized all the time, for the test that a read of a
dict caught while it resizes is torn, never a table without the entries it
has (test_names.py).

Run as ``python resizing.py``: three threads wait ("lasting-<n>"), and a
thread named "resizer" adds keys to _active and deletes them without end,
so that _active moves to new keys every few additions (between two blocks
in turn).  Prints "ready", and stops when its stdin closes.
"""

import sys
import threading

stop = threading.Event()


def resize():
    active = threading._active
    # (No thread has such an ident: these keys name no thread.)
    base = 1 << 62
    while not stop.is_set():
        for i in range(64):
            active[base + i] = None
            del active[base + i]


def main():
    threads = [threading.Thread(target=stop.wait, name="lasting-%d" % i) for i in range(3)]
    threads.append(threading.Thread(target=resize, name="resizer"))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
