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
/* The headers' inline accessors are called on a stand-in object below: no
 * assertion may look at it. */
#define NDEBUG 1
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

%(private)s
int main(void) {
    /* A stand-in object, only ever used for address arithmetic. */
    static char stand_in[512];
    PyObject *obj = (PyObject *)(stand_in + 256);
    (void)obj;
    PyASCIIObject o;
    unsigned int kind_mask, compact_mask, ascii_mask;
    int shift = 0;
    memset(&o, 0, sizeof o); o.state.kind = 7; kind_mask = mask_of(&o);
    memset(&o, 0, sizeof o); o.state.compact = 1; compact_mask = mask_of(&o);
    memset(&o, 0, sizeof o); o.state.ascii = 1; ascii_mask = mask_of(&o);
    while (!((kind_mask >> shift) & 1)) shift++;
%(setup)s
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
        ("tstate_prev", "offsetof(PyThreadState, prev)"),
        ("tstate_next", "offsetof(PyThreadState, next)"),
        ("tstate_interp", "offsetof(PyThreadState, interp)"),
        ("tstate_thread_id", "offsetof(PyThreadState, thread_id)"),
        ("tstate_native_thread_id",
         "offsetof(PyThreadState, native_thread_id)" if minor >= 11 else absent),
        ("tstate_frame", {9: "offsetof(PyThreadState, frame)",
                          10: "offsetof(PyThreadState, frame)",
                          13: "offsetof(PyThreadState, current_frame)"}.get(minor, absent)),
        ("tstate_cframe", "offsetof(PyThreadState, cframe)" if minor in (10, 11, 12) else absent),
        ("tstate_datastack_chunk",
         "offsetof(PyThreadState, datastack_chunk)" if interp_frames else absent),
        ("cframe_current_frame",
         "offsetof(_PyCFrame, current_frame)" if minor in (11, 12) else absent),
        ("cframe_previous", {10: "offsetof(CFrame, previous)",
                             11: "offsetof(_PyCFrame, previous)"}.get(minor, absent)),
        ("tstate_root_cframe",
         "offsetof(PyThreadState, root_cframe)" if minor in (10, 11) else absent),
        # 3.10 runs every frame in a C frame of its own (a call of
        # _PyEval_EvalFrameDefault); 3.11 one C frame per entry from C.
        ("cframes_per_frame", "1" if minor == 10 else "0"),
        # 3.9, which has no C frames to count: how deep the thread is, one
        # per frame run plus one per C call that guards against recursion.
        ("tstate_recursion_depth",
         "offsetof(PyThreadState, recursion_depth)" if minor == 9 else absent),
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
            # 3.11 leaves stacktop as the last call set it; 3.12+ set it to
            # -1 when a frame resumes (_PyFrame_GetStackPointer).
            ("frame_stacktop",
             "offsetof(_PyInterpreterFrame, stacktop)" if minor >= 12 else absent),
            # 3.11: whether a frame began a call of _PyEval_EvalFrameDefault
            # (a C frame of its own, entered from C).
            ("frame_is_entry",
             "offsetof(_PyInterpreterFrame, is_entry)" if minor == 11 else absent),
            # The instructions a frame is at when it has returned or
            # suspended (3.12+: with its stacktop set, not in a call).
        ] + [("op_" + op.lower(), op if minor >= 12 or op in ("RETURN_VALUE", "YIELD_VALUE")
              else absent)
             for op in ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE",
                        "INSTRUMENTED_RETURN_VALUE", "INSTRUMENTED_RETURN_CONST",
                        "INSTRUMENTED_YIELD_VALUE")] + monitoring_fields(minor) + [
            # 3.13: the first instruction of the shim frame a specialised
            # call of a class puts below its __init__'s (_Py_InitCleanup).
            ("op_exit_init_check", "EXIT_INIT_CHECK" if minor >= 13 else absent),
            ("owner_cstack", "FRAME_OWNED_BY_CSTACK" if minor >= 12 else absent),
            ("owner_generator", "FRAME_OWNED_BY_GENERATOR"),
            # 3.12+ push an entry frame whenever the interpreter is entered
            # (GH-96421), so a thread's chain ends at one.
            ("chain_ends_at_entry", "1" if minor >= 12 else "0"),
            ("frame_gen", absent),
            ("code_flags", absent),
            ("generator_flags", "0"),
            # A thread's outermost frame may be a generator's resumed from C
            # (nothing below it) where no entry frame precedes it (3.11):
            # whether it runs tells that case from a suspended generator's.
            ("gen_state_known", "1" if minor == 11 else "0"),
            ("gen_state", "offsetof(PyGenObject, gi_frame_state) - "
             "offsetof(PyGenObject, gi_iframe)" if minor == 11 else "0"),
            ("gen_executing", "FRAME_EXECUTING" if minor == 11 else "0"),
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
            ("frame_stacktop", absent),
            ("frame_is_entry", absent),
        ] + [("op_" + op.lower(), absent)
             for op in ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE",
                        "INSTRUMENTED_RETURN_VALUE", "INSTRUMENTED_RETURN_CONST",
                        "INSTRUMENTED_YIELD_VALUE")] + monitoring_fields(minor) + [
            ("op_exit_init_check", absent),
            ("owner_cstack", absent),
            ("owner_generator", absent),
            ("chain_ends_at_entry", "0"),
            ("frame_gen", "offsetof(PyFrameObject, f_gen)"),
            # A generator's frame lives on after it finished, as its code
            # object's spare frame, with f_back and f_gen cleared.
            ("code_flags", "offsetof(PyCodeObject, co_flags)"),
            ("generator_flags", "CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR"),
            ("gen_state_known", "1"),
            ("gen_state", "offsetof(PyFrameObject, %s)"
             % ("f_executing" if minor == 9 else "f_state")),
            ("gen_executing", "1" if minor == 9 else "FRAME_EXECUTING"),
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
        # The code units of its bytecode (where a frame's position must
        # lie), and the number 3.12+ give each new code object.
        ("code_units", "offsetof(PyCodeObject, ob_base.ob_size)" if interp_frames else absent),
        ("code_version", "offsetof(PyCodeObject, co_version)" if minor >= 12 else absent),
        # Where the frame of a call from a frame of it begins (3.12+, where
        # an entry frame may come between a frame and its caller).
        ("code_framesize", "offsetof(PyCodeObject, co_framesize)" if minor >= 12 else absent),
        ("linetable_format", {9: "LI_LINETABLE_LNOTAB", 10: "LI_LINETABLE_PAIRS"}
         .get(minor, "LI_LINETABLE_LOCATIONS")),
        ("object_type", "offsetof(PyObject, ob_type)"),
        ("bytes_size", "offsetof(PyVarObject, ob_size)"),
        ("bytes_data", "offsetof(PyBytesObject, ob_sval)"),
        ("unicode_state", "offsetof(PyASCIIObject, state)"),
        ("unicode_length", "offsetof(PyASCIIObject, length)"),
        ("unicode_hash", "offsetof(PyASCIIObject, hash)"),
        ("unicode_ascii_size", "sizeof(PyASCIIObject)"),
        ("unicode_compact_size", "sizeof(PyCompactUnicodeObject)"),
        ("unicode_kind_mask", "kind_mask"),
        ("unicode_kind_shift", "shift"),
        ("unicode_compact_mask", "compact_mask"),
        ("unicode_ascii_mask", "ascii_mask"),
    ]
    fields += name_fields(minor)
    fields += long_fields(minor)
    return fields


def monitoring_fields(minor: int) -> List[Tuple[str, str]]:
    """The fields of li_layout that give the opcode sys.monitoring (3.12+)
    put an INSTRUMENTED_LINE or INSTRUMENTED_INSTRUCTION over: the
    instruction's entry in its code object's _co_monitoring data."""
    if minor < 12:
        return [(name, "-1") for name in (
            "op_instrumented_line", "op_instrumented_instruction", "code_monitoring",
            "monitoring_lines", "monitoring_per_instruction_opcodes", "line_data_size",
            "line_data_opcode")]
    return [
        ("op_instrumented_line", "INSTRUMENTED_LINE"),
        ("op_instrumented_instruction", "INSTRUMENTED_INSTRUCTION"),
        ("code_monitoring", "offsetof(PyCodeObject, _co_monitoring)"),
        ("monitoring_lines", "offsetof(_PyCoMonitoringData, lines)"),
        ("monitoring_per_instruction_opcodes",
         "offsetof(_PyCoMonitoringData, per_instruction_opcodes)"),
        ("line_data_size", "sizeof(_PyCoLineInstrumentationData)"),
        ("line_data_opcode", "offsetof(_PyCoLineInstrumentationData, original_opcode)"),
    ]


def long_fields(minor: int) -> List[Tuple[str, str]]:
    """The fields of li_layout that decode a small non-negative int (a
    Thread's _native_id, names.c): its number of digits and its digits."""
    if minor >= 12:
        # lv_tag: the number of digits above NON_SIZE_BITS bits of sign.
        return [
            ("long_format", "LI_LONG_TAG"),
            ("long_size", "offsetof(PyLongObject, long_value.lv_tag)"),
            ("long_digits", "offsetof(PyLongObject, long_value.ob_digit)"),
            ("long_digit_bits", "PyLong_SHIFT"),
            ("long_tag_shift", "NON_SIZE_BITS"),
            ("long_sign_mask", "SIGN_MASK"),
            ("long_sign_negative", "SIGN_NEGATIVE"),
        ]
    # ob_size: the number of digits, negative for a negative int.
    return [
        ("long_format", "LI_LONG_SIZE"),
        ("long_size", "offsetof(PyLongObject, ob_base.ob_size)"),
        ("long_digits", "offsetof(PyLongObject, ob_digit)"),
        ("long_digit_bits", "PyLong_SHIFT"),
        ("long_tag_shift", "0"),
        ("long_sign_mask", "0"),
        ("long_sign_negative", "0"),
    ]


# 3.9 and 3.10 keep a dict's keys object in Objects/dict-common.h, which is
# not installed: its fields, in their order, are declared here instead (the
# tests read a live dict of those versions through this declaration).
PRIVATE_DICT_KEYS = r"""
typedef struct {
    Py_hash_t me_hash;
    PyObject *me_key;
    PyObject *me_value;
} li_dict_entry;

struct li_dict_keys {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
"""

# Where an object's managed dict (3.11+) and its values without a dict are,
# from the headers' own accessors applied to a stand-in object.
MANAGED_DICT_SETUP = {
    11: r"""
    long long managed_dict = (char *)_PyObject_ManagedDictPointer(obj) - (char *)obj;
    long long managed_values = (char *)_PyObject_ValuesPointer(obj) - (char *)obj;
""",
    12: r"""
    long long managed_dict = (char *)_PyObject_DictOrValuesPointer(obj) - (char *)obj;
    unsigned long long values_tag = 0;
    for (int bit = 0; bit < 4; bit++) {
        PyDictOrValues d;
        d.values = (char *)(uintptr_t)(1u << bit);
        if (_PyDictOrValues_IsValues(d)) values_tag |= 1u << bit;
    }
    PyDictOrValues tagged;
    tagged.values = (char *)(uintptr_t)(0x1000 | values_tag);
    long long values_untag = (char *)_PyDictOrValues_GetValues(tagged) - tagged.values;
""",
    13: r"""
    long long managed_dict = (char *)_PyObject_ManagedDictPointer(obj) - (char *)obj;
    long long managed_values = (char *)_PyObject_InlineValues(obj) - (char *)obj;
""",
}


def name_fields(minor: int) -> List[Tuple[str, str]]:
    """The fields of li_layout that lead from an interpreter to its threads'
    threading.Thread names: sys.modules, a dict's entries, an instance's
    attributes (its dict, or the values of a managed dict without one)."""
    absent = "-1"
    split = minor >= 11     # PEP 412 key sharing with PyDictValues, dk_kind
    keys = "struct _dictkeysobject" if split else "struct li_dict_keys"
    entry = "PyDictKeyEntry" if split else "li_dict_entry"
    managed = {11: "LI_VALUES_POINTER", 12: "LI_VALUES_TAGGED", 13: "LI_VALUES_INLINE"}
    return [
        ("interp_modules", "offsetof(PyInterpreterState, %s)"
         % ("imports.modules" if minor >= 12 else "modules")),
        ("type_flags", "offsetof(PyTypeObject, tp_flags)"),
        ("type_dictoffset", "offsetof(PyTypeObject, tp_dictoffset)"),
        ("heaptype_cached_keys",
         "offsetof(PyHeapTypeObject, ht_cached_keys)" if split else absent),
        ("tpflags_managed_dict", "Py_TPFLAGS_MANAGED_DICT" if split else "0"),
        ("tpflags_inline_values", "Py_TPFLAGS_INLINE_VALUES" if minor >= 13 else "0"),
        ("managed_values_kind", managed.get(minor, "LI_VALUES_NONE")),
        ("managed_dict", "managed_dict" if split else "0"),
        ("managed_values", "managed_values" if minor in (11, 13) else "0"),
        ("values_tag", "values_tag" if minor == 12 else "0"),
        ("values_untag", "values_untag" if minor == 12 else "0"),
        ("values_valid", "offsetof(PyDictValues, valid)" if minor >= 13 else absent),
        ("values_items", "offsetof(PyDictValues, values)" if split else "0"),
        ("dict_keys", "offsetof(PyDictObject, ma_keys)"),
        ("dict_values", "offsetof(PyDictObject, ma_values)"),
        ("dict_used", "offsetof(PyDictObject, ma_used)"),
        ("dict_version", "offsetof(PyDictObject, ma_version_tag)"),
        ("keys_format", "LI_DICT_KEYS_LOG2" if split else "LI_DICT_KEYS_SIZE"),
        ("keys_size", "offsetof(%s, %s)" % (keys, "dk_log2_size" if split else "dk_size")),
        ("keys_log2_index_bytes",
         "offsetof(%s, dk_log2_index_bytes)" % keys if split else absent),
        ("keys_kind", "offsetof(%s, dk_kind)" % keys if split else absent),
        ("keys_kind_general", "DICT_KEYS_GENERAL" if split else absent),
        ("keys_nentries", "offsetof(%s, dk_nentries)" % keys),
        ("keys_indices", "offsetof(%s, dk_indices)" % keys),
        ("entry_size", "sizeof(%s)" % entry),
        ("entry_hash", "offsetof(%s, me_hash)" % entry),
        ("entry_key", "offsetof(%s, me_key)" % entry),
        ("entry_value", "offsetof(%s, me_value)" % entry),
        ("uentry_size", "sizeof(PyDictUnicodeEntry)" if split else absent),
        ("uentry_key", "offsetof(PyDictUnicodeEntry, me_key)" if split else absent),
        ("uentry_value", "offsetof(PyDictUnicodeEntry, me_value)" if split else absent),
        ("hash_modulus", "_PyHASH_MODULUS"),
    ]


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
    ("tstate_prev", "offsetof(_Py_DebugOffsets, thread_state.prev)"),
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
    ("interp_modules", "offsetof(_Py_DebugOffsets, interpreter_state.imports_modules)"),
    ("type_flags", "offsetof(_Py_DebugOffsets, type_object.tp_flags)"),
    ("dict_keys", "offsetof(_Py_DebugOffsets, dict_object.ma_keys)"),
    ("dict_values", "offsetof(_Py_DebugOffsets, dict_object.ma_values)"),
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
    # (PyLongObject's fields: installed but not included by Python.h before
    # 3.11; the sign's constants are internal from 3.12.)
    if minor <= 10:
        extra += '#include "longintrepr.h"\n'
    if minor >= 12:
        extra += '#include "internal/pycore_long.h"\n'
    if minor >= 11:
        extra += '#include "opcode.h"\n'
    if minor >= 11:
        extra += ('#include "internal/pycore_frame.h"\n#include "internal/pycore_code.h"\n'
                  '#include "internal/pycore_object.h"\n#include "internal/pycore_dict.h"\n')
    parts = {"extra": extra, "private": "" if minor >= 11 else PRIVATE_DICT_KEYS,
             "setup": MANAGED_DICT_SETUP.get(minor, "")}
    body = []
    for name, expr in layout_fields(minor):
        if expr.startswith("LI_"):
            body.append('    printf("    .%s = %s,\\n");' % (name, expr))
            continue
        body.append("    F(%s, %s);" % (name, expr))
    out = run_program(PRELUDE % dict(parts, body="\n".join(body)), include)
    files = {}
    header = ("/* Generated by scripts/gen_stack_layouts.py from the headers of CPython %s;\n"
              " * do not edit. */\n" % version)
    files["py3%02d.h" % minor] = (header + "static const li_layout li_layout_py3%02d = {\n%s};\n"
                                  % (minor, out))
    if minor >= 13:
        body = ["    F(major, 3);", "    F(minor, %d);" % minor]
        body += ["    F(%s, %s);" % (n, e) for n, e in DEBUG_OFFSETS_FIELDS]
        out = run_program(PRELUDE % dict(parts, body="\n".join(body)), include)
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
