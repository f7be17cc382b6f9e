"""Started as a plain ``python spawn_parent.py``: coverage.py starts from a
site hook (.pth) in this process and in each child it runs."""

import subprocess
import sys


def run_child(*args):
    completed = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


outputs = [
    run_child("spawn_child.py", "4"),
    run_child("-c", "import spawn_child; print(spawn_child.work(2))"),
    run_child("-m", "calc", "3 * 3"),
]
for line in outputs:
    print("child said:", line)
