"""Every thread's Python stack in another process, read from outside.

``python -m lowimpact stack PID`` prints, for each thread of a CPython
3.9-3.13 process, its frames innermost last, as a traceback shows them::

    Process 4242: CPython 3.11.7

    Thread 4242 "MainThread", holds the GIL (most recent call last):
      File "/srv/app.py", line 80, in <module>
        main()
      File "/srv/app.py", line 64, in main
        serve(port)

The process is not stopped or changed: its memory is read
(``process_vm_readv``) while it runs, and a read that raced with it is
taken again.  Frames are named by qualified name where the version keeps one
(3.11+), by function name before.  Threads are named as threading names
them (``threading.Thread.name``, read from the process too), or by the
kernel's name where threading does not know the thread.  Which thread holds
the GIL is shown where the version makes it readable.
"""

from __future__ import annotations

import linecache
import os
from typing import List, NamedTuple, Optional, TextIO

__all__ = [
    "Frame",
    "ThreadStack",
    "attach",
    "read_stacks",
    "thread_name",
    "write_stacks",
    "StackError",
    "NotPythonError",
    "UnsupportedVersionError",
]

try:
    from lowimpact._stack import NotPythonError, Reader, StackError, UnsupportedVersionError
except ImportError as _exc:  # pragma: no cover - not Linux, or not built
    _IMPORT_ERROR: Optional[ImportError] = _exc

    class StackError(RuntimeError):  # type: ignore[no-redef]
        """Reading a process's stacks failed."""

    class NotPythonError(StackError):  # type: ignore[no-redef]
        """The process is not a CPython process."""

    class UnsupportedVersionError(StackError):  # type: ignore[no-redef]
        """The process runs a CPython the reader does not support."""

    Reader = None  # type: ignore[assignment,misc]
else:
    _IMPORT_ERROR = None


class Frame(NamedTuple):
    """One frame: file, function (qualified where the version has it), line."""

    filename: str
    name: str
    line: int


class ThreadStack(NamedTuple):
    """One thread: its ids, its name (threading's, else the kernel's, None
    if neither is known), whether it holds the GIL (None where the version
    does not tell) and its frames, outermost first."""

    thread_id: int
    native_id: Optional[int]
    name: Optional[str]
    holds_gil: Optional[bool]
    frames: List[Frame]


def attach(pid: int) -> "Reader":
    """A reader of process *pid*.

    Raises ProcessLookupError, PermissionError (with what to do),
    NotPythonError, UnsupportedVersionError, or RuntimeError where the reader
    is not available on this platform.
    """
    if Reader is None:
        raise RuntimeError("the stack reader is not available here: %s" % _IMPORT_ERROR)
    return Reader(pid)


def thread_name(pid: int, native_id: Optional[int]) -> Optional[str]:
    """The kernel's name of a thread (``/proc/PID/task/TID/comm``), if known."""
    if not native_id:
        return None
    try:
        with open("/proc/%d/task/%d/comm" % (pid, native_id)) as f:
            return f.read().strip()
    except OSError:
        return None


def read_stacks(reader: "Reader") -> List[ThreadStack]:
    """Every thread's stack, from one consistent snapshot, and its name."""
    stacks = reader.threads()
    names = reader.thread_names()
    return [
        ThreadStack(ident, native, names.get(native or ident) or thread_name(reader.pid, native),
                    gil, [Frame(*frame) for frame in frames])
        for ident, native, gil, frames in stacks
    ]


def _version(reader: "Reader") -> str:
    major, minor, micro = reader.version
    return "%d.%d%s" % (major, minor, "" if micro is None else ".%d" % micro)


def write_stacks(reader: "Reader", stacks: List[ThreadStack], stream: TextIO,
                 source: bool = True) -> None:
    """Print *stacks* as tracebacks, innermost frame last; with *source*, each
    frame's line of source below it where the file can be read here."""
    stream.write("Process %d: CPython %s\n" % (reader.pid, _version(reader)))
    for stack in stacks:
        ident = stack.native_id if stack.native_id else "0x%x" % stack.thread_id
        head = "Thread %s" % ident
        if stack.name:
            head += ' "%s"' % stack.name
        if stack.holds_gil:
            head += ", holds the GIL"
        stream.write("\n%s (most recent call last):\n" % head)
        if not stack.frames:
            stream.write("  (no Python frames)\n")
        for frame in stack.frames:
            stream.write('  File "%s", line %d, in %s\n'
                         % (frame.filename, frame.line, frame.name))
            if source and frame.line > 0 and os.path.isfile(frame.filename):
                text = linecache.getline(frame.filename, frame.line).strip()
                if text:
                    stream.write("    %s\n" % text)
    if reader.gil_readable and not any(s.holds_gil for s in stacks):
        stream.write("\nNo thread holds the GIL.\n")
