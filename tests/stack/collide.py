"""Run named.py so that one of its threads' kernel ids looks like the high
half of an address, and read its thread names from inside the same PID
namespace: the condition of CI's 3.10 failure (46 of 47 names lost), made
on purpose.

Run as ``python collide.py PYTHON`` as the first process of a new user and
PID namespace with its own /proc (``unshare --user --map-root-user --pid
--fork --mount-proc``): it sets the namespace's last PID so that the fifth
thread of the child gets tid 0x7fff and starts the child with address space
randomisation off (``setarch -R``), so that its thread stacks lie at
0x7fff........ and the high half of the pointers in each struct pthread is
0x7fff as well.  It prints one JSON line: the child's {tid: name or null},
its threads' tids as the reader read them, the high halves of its mappings'
addresses, and for thread_db True and False the names read, where the
reader took the tids from and its names_* counters; or "skip: why".
"""

import json
import os
import subprocess
import sys

from lowimpact.tools.stack import Reader

COLLIDING = 0x7FFF
HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    python = sys.argv[1]
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            # The child, then its threads in order: the fifth gets COLLIDING.
            f.write(str(COLLIDING - 6))
    except OSError as e:
        print("skip: cannot set the next PID: %s" % e, flush=True)
        return
    child = subprocess.Popen(["setarch", "-R", python, os.path.join(HERE, "named.py")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("ready "), line
        report = {"names": json.loads(line[6:]), "reads": {}}
        with open("/proc/%d/maps" % child.pid) as f:
            report["high_halves"] = sorted({int(line.split("-")[0], 16) >> 32 for line in f})
        for thread_db in (True, False):
            reader = Reader(child.pid, thread_db=thread_db)
            report["tids"] = [native for _, native, _, _ in reader.threads()]
            report["reads"][str(thread_db)] = {
                "names": reader.thread_names(),
                "tid_source": reader.tid_source,
                "counters": [reader.names_torn, reader.names_unread, reader.names_mismatched],
            }
        print(json.dumps(report), flush=True)
    finally:
        child.stdin.close()
        child.wait()


if __name__ == "__main__":
    main()
