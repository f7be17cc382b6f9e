"""A program parked in a known stack, for the stack reader's tests.

Run as ``python parked.py [--engine]``: it prints "ready" and the ids of
the running code objects (JSON) once every thread is parked and stays there until its stdin closes.  Each line the reader must
show ends with a ``# at: NAME`` comment; the tests find the lines by those.
With ``--engine`` (3.11), lowimpact's engine runs the code with LINE and
PY_START events on, so the frames run instrumented copies.
"""

import json
import sys
import threading

parked = threading.Event()
release = threading.Event()


def worker_inner():
    parked.set()
    release.wait()  # at: worker_inner


def worker():
    worker_inner()  # at: worker


def code_ids():
    """{co_name: id} of the code objects of this file's running frames, as
    Python code sees them (under the engine: the originals)."""
    ids = {}
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_filename == __file__ and frame.f_code.co_name != "code_ids":
                ids[frame.f_code.co_name] = id(frame.f_code)
            frame = frame.f_back
    return ids


def innermost():
    started.wait()
    print("ready", json.dumps(code_ids()), flush=True)
    sys.stdin.read()  # at: innermost
    release.set()
    return 1


async def coroutine():
    return innermost()  # at: coroutine


def generator():
    coro = coroutine()
    try:
        coro.send(None)  # at: generator
    except StopIteration as stop:
        yield stop.value


class Klass:
    @classmethod
    def method(cls):
        return (lambda: next(generator()))()  # at: method


def nested():
    def inner():
        return Klass.method()  # at: inner

    return inner()  # at: nested


def main():
    thread = threading.Thread(target=worker, name="parked-worker")
    thread.start()
    parked.wait()
    started.set()
    nested()  # at: main
    thread.join()


started = threading.Event()

if __name__ == "__main__":
    if "--engine" in sys.argv:
        import lowimpact

        lowimpact.install()
        mon = sys.monitoring
        mon.use_tool_id(3, "parked")
        mon.register_callback(3, mon.events.LINE, lambda code, line: None)
        mon.register_callback(3, mon.events.PY_START, lambda code, offset: None)
        mon.set_events(3, mon.events.LINE | mon.events.PY_START)
    main()  # at: module
