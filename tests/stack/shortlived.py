"""Threads that live a moment, for the test that a thread is never given
another's name (test_names.py).

Run as ``python shortlived.py LOG``: several loops start and join threads
without end, each named "w-<n>" (n counting up, never reused); each thread
appends "<name> <its kernel tid>" to LOG before it ends.  glibc gives a new
thread the pthread_t (threading's ident) of one just joined, so the Thread
threading holds under an ident keeps changing.  Prints "ready" once threads
have run, and stops when its stdin closes.
"""

import itertools
import os
import sys
import threading

LOOPS = 4

counter = itertools.count()
stop = threading.Event()


def body(log):
    # One write of a short line to an O_APPEND file: whole, whoever else
    # writes at the same time.
    os.write(log, ("%s %d\n" % (threading.current_thread().name,
                                threading.get_native_id())).encode())


def churn(log):
    while not stop.is_set():
        thread = threading.Thread(target=body, args=(log,), name="w-%d" % next(counter))
        thread.start()
        thread.join()


def main():
    log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    loops = [threading.Thread(target=churn, args=(log,), name="loop-%d" % i)
             for i in range(LOOPS)]
    for loop in loops:
        loop.start()
    print("ready", flush=True)
    sys.stdin.read()
    stop.set()
    for loop in loops:
        loop.join()
    os.close(log)


if __name__ == "__main__":
    main()
