"""Threads with known names, for the stack reader's tests of thread names.

Run as ``python named.py``: it starts threads named in ASCII, Latin-1, CJK
and astral characters, one renamed after it started, one whose attributes
were moved into a dict of their own, one that lost an attribute and one
with more attributes than its class's shared keys hold (on 3.9/3.10 each
makes its own dict a combined one and stops Thread sharing keys, so the
Threads after them have combined dicts and those before split ones), a
pool of many (so that threading's _active outgrows its first table) and
one started with _thread, which threading does not know; then prints
"ready" and {kernel thread id: name threading gives it, or null} (JSON)
and waits until its stdin closes.
"""

import _thread
import json
import sys
import threading

release = threading.Event()
lock = threading.Lock()
names = {}


def park(expected):
    with lock:
        names[threading.get_native_id()] = expected
    release.wait()


def raw():
    with lock:
        names[threading.get_native_id()] = None
    release.wait()


def main():
    threads = []
    for name in ["worker-ascii", "w\u00f6rker-latin1", "\u540d\u524d-cjk", "\U0001f9f5-astral"]:
        threads.append(threading.Thread(target=park, args=(name,), name=name))
    renamed = threading.Thread(target=park, args=("renamed-later",), name="first-name")
    threads.append(renamed)
    with_dict = threading.Thread(target=park, args=("with-a-dict",), name="with-a-dict")
    # Asking for __dict__ makes the instance a dict of its own (3.11+ keep
    # attributes without one until then).
    vars(with_dict)["extra"] = 1
    threads.append(with_dict)
    deleted = threading.Thread(target=park, args=("lost-an-attribute",),
                               name="lost-an-attribute")
    deleted.scratch = 1
    del deleted.scratch
    threads.append(deleted)
    wide = threading.Thread(target=park, args=("wide",), name="wide")
    for i in range(40):
        setattr(wide, "attribute_%d" % i, i)
    threads.append(wide)
    threads += [threading.Thread(target=park, args=("pool-%d" % i,), name="pool-%d" % i)
                for i in range(40)]
    for thread in threads:
        thread.start()
    renamed.name = "renamed-later"
    _thread.start_new_thread(raw, ())
    with lock:
        names[threading.get_native_id()] = "MainThread"
    while True:
        with lock:
            if len(names) == len(threads) + 2:
                break
        release.wait(0.01)
    print("ready", json.dumps(names), flush=True)
    sys.stdin.read()
    release.set()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
