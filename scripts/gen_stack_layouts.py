#!/usr/bin/env python3
"""Generate the stack reader's per-version layout tables from CPython headers.

For each CPython 3.9-3.13 found (pyenv, or the interpreters named on the
command line), compile a small C program with that version's installed
headers (internal ones included) that prints ``offsetof`` of every field the
reader uses, and write ``src/stack/layouts/pyNNN.h``; for 3.13 also the
positions of the fields of ``_Py_DebugOffsets`` the reader uses
(``src/stack/layouts/debug_offsets_pyNNN.h``).

    python3 scripts/gen_stack_layouts.py            # regenerate
    python3 scripts/gen_stack_layouts.py --check    # compare, exit 1 on a difference

Only this script knows which fields which version has; the tables it writes
describe behaviours (frame chain, line table format) for the reader.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import sysconfig
import tempfile
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "src", "stack", "layouts")
MINORS = (9, 10, 11, 12, 13)

PRELUDE = r"""
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "frameobject.h"
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
%(extra)s
#define F(name, expr) printf("    ." #name " = %%lld,\n", (long long)(expr))
#define S(name, expr) printf("    ." #name " = %%s,\n", expr)

/* Masks of the bit fields of PyASCIIObject.state over its first 32 bits. */
static unsigned int mask_of(PyASCIIObject *o) {
    unsigned int m;
    memcpy(&m, &o->state, sizeof m);
    return m;
}

int main(void) {
    PyASCIIObject o;
    unsigned int kind_mask, compact_mask, ascii_mask;
    int shift = 0;
    memset(&o, 0, sizeof o); o.state.kind = 7; kind_mask = mask_of(&o);
    memset(&o, 0, sizeof o); o.state.compact = 1; compact_mask = mask_of(&o);
    memset(&o, 0, sizeof o); o.state.ascii = 1; ascii_mask = mask_of(&o);
    while (!((kind_mask >> shift) & 1)) shift++;
%(body)s
    return 0;
}
"""


def layout_fields(minor: int) -> List[Tuple[str, str]]:
    """(field, C expression or constant) of the li_layout of 3.minor."""
    fields: List[Tuple[str, str]] = [("major", "3"), ("minor", str(minor))]
    fields.append(("from_debug_offsets", "1" if minor >= 13 else "0"))
    absent = "-1"
    interp_frames = minor >= 11
    fields += [
        ("runtime_interpreters_head", "offsetof(_PyRuntimeState, interpreters.head)"),
        ("runtime_gil_tstate_current",
         "offsetof(_PyRuntimeState, gilstate.tstate_current)" if minor <= 11 else absent),
        ("interp_size", "sizeof(PyInterpreterState)"),
        ("interp_next", "offsetof(PyInterpreterState, next)"),
        ("interp_threads_head", "offsetof(PyInterpreterState, %s)"
         % ("threads.head" if minor >= 11 else "tstate_head")),
        ("interp_gil_locked", "offsetof(PyInterpreterState, _gil.locked)" if minor >= 12 else absent),
        ("interp_gil_holder",
         "offsetof(PyInterpreterState, _gil.last_holder)" if minor >= 12 else absent),
        ("tstate_size", "sizeof(PyThreadState)"),
        ("tstate_next", "offsetof(PyThreadState, next)"),
        ("tstate_interp", "offsetof(PyThreadState, interp)"),
        ("tstate_thread_id", "offsetof(PyThreadState, thread_id)"),
        ("tstate_native_thread_id",
         "offsetof(PyThreadState, native_thread_id)" if minor >= 11 else absent),
        ("tstate_frame", {9: "offsetof(PyThreadState, frame)",
                          10: "offsetof(PyThreadState, frame)",
                          13: "offsetof(PyThreadState, current_frame)"}.get(minor, absent)),
        ("tstate_cframe", "offsetof(PyThreadState, cframe)" if minor in (11, 12) else absent),
        ("tstate_datastack_chunk",
         "offsetof(PyThreadState, datastack_chunk)" if interp_frames else absent),
        ("cframe_current_frame",
         "offsetof(_PyCFrame, current_frame)" if minor in (11, 12) else absent),
    ]
    if interp_frames:
        fields += [
            ("frame_kind", "LI_INTERPRETER_FRAME"),
            ("frame_size", "offsetof(_PyInterpreterFrame, localsplus)"),
            ("frame_back", "offsetof(_PyInterpreterFrame, previous)"),
            ("frame_code", "offsetof(_PyInterpreterFrame, %s)"
             % ("f_executable" if minor >= 13 else "f_code")),
            ("frame_lasti", absent),
            ("lasti_unit", "sizeof(_Py_CODEUNIT)"),
            ("frame_instr", "offsetof(_PyInterpreterFrame, %s)"
             % ("instr_ptr" if minor >= 13 else "prev_instr")),
            ("frame_owner", "offsetof(_PyInterpreterFrame, owner)"),
            ("owner_cstack", "FRAME_OWNED_BY_CSTACK" if minor >= 12 else absent),
            ("owner_generator", "FRAME_OWNED_BY_GENERATOR"),
            # 3.12+ push an entry frame whenever the interpreter is entered
            # (GH-96421), so a thread's chain ends at one.
            ("chain_ends_at_entry", "1" if minor >= 12 else "0"),
            ("frame_gen", absent),
        ]
    else:
        fields += [
            ("frame_kind", "LI_FRAME_OBJECT"),
            ("frame_size", "sizeof(PyFrameObject)"),
            ("frame_back", "offsetof(PyFrameObject, f_back)"),
            ("frame_code", "offsetof(PyFrameObject, f_code)"),
            ("frame_lasti", "offsetof(PyFrameObject, f_lasti)"),
            # 3.9 counts f_lasti in bytes, 3.10 in code units (bpo-27129).
            ("lasti_unit", "sizeof(_Py_CODEUNIT)" if minor >= 10 else "1"),
            ("frame_instr", absent),
            ("frame_owner", absent),
            ("owner_cstack", absent),
            ("owner_generator", absent),
            ("chain_ends_at_entry", "0"),
            ("frame_gen", "offsetof(PyFrameObject, f_gen)"),
        ]
    fields += [
        ("code_size", "offsetof(PyCodeObject, co_code_adaptive)" if interp_frames
         else "sizeof(PyCodeObject)"),
        ("code_filename", "offsetof(PyCodeObject, co_filename)"),
        ("code_name", "offsetof(PyCodeObject, co_name)"),
        ("code_qualname", "offsetof(PyCodeObject, co_qualname)" if interp_frames else absent),
        ("code_linetable", "offsetof(PyCodeObject, %s)"
         % ("co_lnotab" if minor == 9 else "co_linetable")),
        ("code_firstlineno", "offsetof(PyCodeObject, co_firstlineno)"),
        ("code_adaptive", "offsetof(PyCodeObject, co_code_adaptive)" if interp_frames else absent),
        ("linetable_format", {9: "LI_LINETABLE_LNOTAB", 10: "LI_LINETABLE_PAIRS"}
         .get(minor, "LI_LINETABLE_LOCATIONS")),
        ("object_type", "offsetof(PyObject, ob_type)"),
        ("bytes_size", "offsetof(PyVarObject, ob_size)"),
        ("bytes_data", "offsetof(PyBytesObject, ob_sval)"),
        ("unicode_state", "offsetof(PyASCIIObject, state)"),
        ("unicode_length", "offsetof(PyASCIIObject, length)"),
        ("unicode_ascii_size", "sizeof(PyASCIIObject)"),
        ("unicode_compact_size", "sizeof(PyCompactUnicodeObject)"),
        ("unicode_kind_mask", "kind_mask"),
        ("unicode_kind_shift", "shift"),
        ("unicode_compact_mask", "compact_mask"),
        ("unicode_ascii_mask", "ascii_mask"),
    ]
    return fields


DEBUG_OFFSETS_FIELDS = [
    ("size", "sizeof(_Py_DebugOffsets)"),
    ("version", "offsetof(_Py_DebugOffsets, version)"),
    ("free_threaded", "offsetof(_Py_DebugOffsets, free_threaded)"),
    ("runtime_interpreters_head", "offsetof(_Py_DebugOffsets, runtime_state.interpreters_head)"),
    ("interp_size", "offsetof(_Py_DebugOffsets, interpreter_state.size)"),
    ("interp_next", "offsetof(_Py_DebugOffsets, interpreter_state.next)"),
    ("interp_threads_head", "offsetof(_Py_DebugOffsets, interpreter_state.threads_head)"),
    ("interp_gil_locked",
     "offsetof(_Py_DebugOffsets, interpreter_state.gil_runtime_state_locked)"),
    ("interp_gil_holder",
     "offsetof(_Py_DebugOffsets, interpreter_state.gil_runtime_state_holder)"),
    ("tstate_size", "offsetof(_Py_DebugOffsets, thread_state.size)"),
    ("tstate_next", "offsetof(_Py_DebugOffsets, thread_state.next)"),
    ("tstate_interp", "offsetof(_Py_DebugOffsets, thread_state.interp)"),
    ("tstate_current_frame", "offsetof(_Py_DebugOffsets, thread_state.current_frame)"),
    ("tstate_thread_id", "offsetof(_Py_DebugOffsets, thread_state.thread_id)"),
    ("tstate_native_thread_id", "offsetof(_Py_DebugOffsets, thread_state.native_thread_id)"),
    ("tstate_datastack_chunk", "offsetof(_Py_DebugOffsets, thread_state.datastack_chunk)"),
    ("frame_size", "offsetof(_Py_DebugOffsets, interpreter_frame.size)"),
    ("frame_previous", "offsetof(_Py_DebugOffsets, interpreter_frame.previous)"),
    ("frame_executable", "offsetof(_Py_DebugOffsets, interpreter_frame.executable)"),
    ("frame_instr_ptr", "offsetof(_Py_DebugOffsets, interpreter_frame.instr_ptr)"),
    ("frame_owner", "offsetof(_Py_DebugOffsets, interpreter_frame.owner)"),
    ("code_size", "offsetof(_Py_DebugOffsets, code_object.size)"),
    ("code_filename", "offsetof(_Py_DebugOffsets, code_object.filename)"),
    ("code_name", "offsetof(_Py_DebugOffsets, code_object.name)"),
    ("code_qualname", "offsetof(_Py_DebugOffsets, code_object.qualname)"),
    ("code_linetable", "offsetof(_Py_DebugOffsets, code_object.linetable)"),
    ("code_firstlineno", "offsetof(_Py_DebugOffsets, code_object.firstlineno)"),
    ("code_adaptive", "offsetof(_Py_DebugOffsets, code_object.co_code_adaptive)"),
    ("object_type", "offsetof(_Py_DebugOffsets, pyobject.ob_type)"),
    ("bytes_size", "offsetof(_Py_DebugOffsets, bytes_object.ob_size)"),
    ("bytes_data", "offsetof(_Py_DebugOffsets, bytes_object.ob_sval)"),
    ("unicode_state", "offsetof(_Py_DebugOffsets, unicode_object.state)"),
    ("unicode_length", "offsetof(_Py_DebugOffsets, unicode_object.length)"),
    ("unicode_ascii_size", "offsetof(_Py_DebugOffsets, unicode_object.asciiobject_size)"),
]


def find_interpreters() -> Dict[int, str]:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found: Dict[int, str] = {}
    for minor in MINORS:
        candidates = sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor)),
                            key=lambda p: [int(x) for x in os.path.basename(p).split(".")
                                           if x.isdigit()], reverse=True)
        for candidate in candidates:
            python = os.path.join(candidate, "bin", "python3.%d" % minor)
            if os.access(python, os.X_OK):
                found[minor] = python
                break
    return found


def include_dir(python: str) -> str:
    return subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        text=True).strip()


def version_of(python: str) -> Tuple[int, int, int]:
    out = subprocess.check_output(
        [python, "-c", "import sys; print(*sys.version_info[:3])"], text=True)
    major, minor, micro = (int(x) for x in out.split())
    return major, minor, micro


def run_program(source: str, include: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        c_file = os.path.join(tmp, "layout.c")
        exe = os.path.join(tmp, "layout")
        with open(c_file, "w") as f:
            f.write(source)
        cc = os.environ.get("CC", sysconfig.get_config_var("CC") or "cc").split()
        subprocess.run(cc + ["-std=gnu11", "-w", "-I", include, "-I",
                             os.path.join(os.path.dirname(HERE), "src", "stack"),
                             "-o", exe, c_file], check=True)
        return subprocess.check_output([exe], text=True)


def generate(minor: int, python: str) -> Dict[str, str]:
    """{file name: contents} of the tables of 3.minor, from *python*'s headers."""
    include = include_dir(python)
    version = "%d.%d.%d" % version_of(python)
    extra = '#include "layout.h"\n'
    if minor >= 11:
        extra += '#include "internal/pycore_frame.h"\n#include "internal/pycore_code.h"\n'
    body = []
    for name, expr in layout_fields(minor):
        if expr.startswith("LI_"):
            body.append('    printf("    .%s = %s,\\n");' % (name, expr))
            continue
        body.append("    F(%s, %s);" % (name, expr))
    out = run_program(PRELUDE % {"extra": extra, "body": "\n".join(body)}, include)
    files = {}
    header = ("/* Generated by scripts/gen_stack_layouts.py from the headers of CPython %s;\n"
              " * do not edit. */\n" % version)
    files["py3%02d.h" % minor] = (header + "static const li_layout li_layout_py3%02d = {\n%s};\n"
                                  % (minor, out))
    if minor >= 13:
        body = ["    F(major, 3);", "    F(minor, %d);" % minor]
        body += ["    F(%s, %s);" % (n, e) for n, e in DEBUG_OFFSETS_FIELDS]
        out = run_program(PRELUDE % {"extra": extra, "body": "\n".join(body)}, include)
        files["debug_offsets_py3%02d.h" % minor] = (
            header + "static const li_debug_offsets_fields li_debug_offsets_py3%02d = {\n%s};\n"
            % (minor, out))
    return files


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in src/stack/layouts; exit 1 if they differ")
    parser.add_argument("pythons", nargs="*", help="interpreters (default: pyenv's 3.9-3.13)")
    options = parser.parse_args(argv)
    if options.pythons:
        pythons = {version_of(p)[1]: p for p in options.pythons}
    else:
        pythons = find_interpreters()
    if not pythons:
        print("no CPython 3.9-3.13 found", file=sys.stderr)
        return 1
    status = 0
    for minor, python in sorted(pythons.items()):
        for name, text in generate(minor, python).items():
            path = os.path.join(OUT, name)
            if options.check:
                try:
                    with open(path) as f:
                        current = f.read()
                except FileNotFoundError:
                    current = ""
                # The version line names the patch release the table came from;
                # the offsets must agree across patch releases.
                same = current.split("\n", 2)[2:] == text.split("\n", 2)[2:]
                print("%s: %s (%s)" % (name, "matches" if same else "DIFFERS", python))
                status |= not same
            else:
                os.makedirs(OUT, exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
                print("wrote", os.path.relpath(path))
    return status


if __name__ == "__main__":
    sys.exit(main())
