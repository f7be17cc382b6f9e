/* Where the fields an out-of-process reader needs sit in one CPython minor
 * version's structures: the only version-specific data of the stack reader.
 *
 * Offsets are in bytes from the start of the structure named in the field's
 * prefix; -1 means the version has no such field.  The tables of 3.9-3.12
 * (layouts/pyNNN.h) are generated from each version's installed headers by
 * scripts/gen_stack_layouts.py; 3.13's offsets come from the target's own
 * _Py_DebugOffsets at run time, and its table holds only what those lack.
 * The walker reads *behaviours* from here (which frame chain, which line
 * table format), never a version number. */
#ifndef LI_STACK_LAYOUT_H
#define LI_STACK_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* Buffers a frame and a code object's head are copied into: a layout whose
 * structures do not fit is refused. */
#define LI_MAX_FRAME_SIZE 1024
#define LI_MAX_CODE_HEAD 512

/* How a thread's frames are chained. */
enum li_frame_kind {
    /* PyFrameObject linked by f_back, the position is f_lasti (an int). */
    LI_FRAME_OBJECT = 1,
    /* _PyInterpreterFrame linked by previous, the position is a pointer
     * into the code object's co_code_adaptive. */
    LI_INTERPRETER_FRAME = 2,
};

/* How a code object maps bytecode offsets to lines. */
enum li_linetable_format {
    LI_LINETABLE_LNOTAB = 1,     /* co_lnotab: (offset delta, line delta) byte pairs */
    LI_LINETABLE_PAIRS = 2,      /* co_linetable of PEP 626: (size, line delta) pairs */
    LI_LINETABLE_LOCATIONS = 3,  /* co_linetable of PEP 657: varint location entries */
};

/* Where an instance of a class with a managed dict (3.11+) keeps its
 * attributes while no dict has been made for it: the values of the keys its
 * class shares (ht_cached_keys). */
enum li_managed_values {
    LI_VALUES_NONE = 0,     /* no managed dicts: tp_dictoffset leads to a dict */
    LI_VALUES_POINTER = 1,  /* a PyDictValues * at managed_values from the object */
    LI_VALUES_TAGGED = 2,   /* the managed dict's slot, tagged by values_tag */
    LI_VALUES_INLINE = 3,   /* inline at managed_values, while its valid byte is set */
};

/* How a dict's keys object gives its size and index width. */
enum li_dict_keys_format {
    LI_DICT_KEYS_SIZE = 1,  /* Py_ssize_t dk_size; indices as wide as the size needs */
    LI_DICT_KEYS_LOG2 = 2,  /* uint8_t dk_log2_size, dk_log2_index_bytes, dk_kind */
};

/* How an int gives its number of digits (names.c reads small ones). */
enum li_long_format {
    LI_LONG_SIZE = 1,       /* Py_ssize_t ob_size: the digits, negative if the int is */
    LI_LONG_TAG = 2,        /* uintptr_t lv_tag: digits << long_tag_shift | sign */
};

typedef struct li_layout {
    int major, minor;
    /* 1 if the offsets below are to be read from the target's
     * _Py_DebugOffsets (the table then supplies only the constants). */
    int from_debug_offsets;

    /* _PyRuntimeState */
    int64_t runtime_interpreters_head;
    int64_t runtime_gil_tstate_current;     /* the thread holding the GIL, or -1 */

    /* PyInterpreterState */
    int64_t interp_size;
    int64_t interp_next;
    int64_t interp_threads_head;
    int64_t interp_gil_locked;              /* its own GIL's locked (an int), or -1 */
    int64_t interp_gil_holder;              /* its own GIL's last holder, or -1 */

    /* PyThreadState */
    int64_t tstate_size;
    int64_t tstate_prev;                    /* checked by a walk (threadlist.c) */
    int64_t tstate_next;
    int64_t tstate_interp;
    int64_t tstate_thread_id;               /* pthread_t */
    int64_t tstate_native_thread_id;        /* the kernel's tid, or -1 */
    int64_t tstate_frame;                   /* innermost frame, or -1 (then via cframe) */
    int64_t tstate_cframe;                  /* _PyCFrame *, or -1 */
    int64_t cframe_current_frame;           /* in _PyCFrame, or -1 */
    /* 3.10, 3.11 (else -1): the C frame a C frame was entered from, and
     * the thread state's own C frame, the previous of the thread's first */
    int64_t cframe_previous;
    int64_t tstate_root_cframe;
    /* 1 if every frame runs in a C frame of its own (3.10), 0 if a C frame
     * runs all the frames from one entry from C (3.11) */
    int cframes_per_frame;
    /* 3.9 (else -1): int recursion_depth, one per frame that runs (each in
     * a call of _PyEval_EvalFrameDefault) and one per C call that guards
     * against recursion (Py_EnterRecursiveCall) */
    int64_t tstate_recursion_depth;
    /* the _PyStackChunk holding the thread's newest frames, or -1 where
     * frames are separate objects; the chunk starts with its header
     * (previous, size), its frames follow, outermost first */
    int64_t tstate_datastack_chunk;

    /* frames */
    int frame_kind;                         /* enum li_frame_kind */
    int64_t frame_size;                     /* bytes to read of one frame */
    int64_t frame_back;
    int64_t frame_code;
    int64_t frame_lasti;                    /* LI_FRAME_OBJECT: int f_lasti */
    int lasti_unit;                         /* bytes per unit of f_lasti */
    int64_t frame_instr;                    /* LI_INTERPRETER_FRAME: instruction pointer */
    int64_t frame_owner;                    /* char owner, or -1 */
    /* int stacktop, where the interpreter sets it to -1 whenever a frame
     * runs and to 0 or more when it calls a Python frame (3.12+), or -1 */
    int64_t frame_stacktop;
    /* 3.11 (else -1): bool is_entry, set in a frame that began a call of
     * _PyEval_EvalFrameDefault (entered from C, in a C frame of its own) */
    int64_t frame_is_entry;
    /* Opcodes (3.11+, each -1 where the version has none) of the
     * instructions a frame is at when it has returned or suspended (3.12+:
     * where one whose stacktop is set is not in a call). */
    int op_return_value, op_return_const, op_yield_value;
    int op_instrumented_return_value, op_instrumented_return_const;
    int op_instrumented_yield_value;
    /* sys.monitoring (3.12+, else -1): the opcodes it puts over an
     * instruction for LINE and INSTRUCTION events (a traced target's, and
     * settrace's, which 3.12 runs on it), and where the interpreter keeps
     * the instruction they hide: the code object's _PyCoMonitoringData,
     * its lines[] (entries of line_data_size bytes, the opcode at
     * line_data_opcode) and per_instruction_opcodes[], one per code unit.
     * Under both, lines[] holds INSTRUMENTED_INSTRUCTION. */
    int op_instrumented_line, op_instrumented_instruction;
    int64_t code_monitoring;
    int64_t monitoring_lines, monitoring_per_instruction_opcodes;
    int64_t line_data_size, line_data_opcode;
    /* 3.13 (else -1): EXIT_INIT_CHECK, the first instruction of the shim
     * frame (code object _Py_InitCleanup) that CALL_ALLOC_AND_ENTER_INIT
     * pushes between the caller's frame and the class's __init__'s: it
     * is at that instruction, not past it, while __init__ runs */
    int op_exit_init_check;
    int owner_cstack;                       /* owner value of C-stack entry frames, or -1 */
    int owner_generator;                    /* owner value of generators' frames, or -1 */
    /* 1 if every thread's chain ends at an entry frame (owner_cstack) */
    int chain_ends_at_entry;
    int64_t frame_gen;                      /* LI_FRAME_OBJECT: f_gen, or -1 */
    /* LI_FRAME_OBJECT (else -1, 0): the code object's int co_flags, and
     * the flags of generators', coroutines' and async generators' code */
    int64_t code_flags;
    int generator_flags;
    /* Whether a generator's frame runs, where the version lets a thread's
     * chain end in one (resumed from C with no Python frame below): a
     * char at gen_state from the frame (negative: in the generator object
     * before it), equal to gen_executing while it runs. */
    int gen_state_known;
    int64_t gen_state;
    int gen_executing;

    /* PyCodeObject */
    int64_t code_size;                      /* bytes to read of the code object's head */
    int64_t code_filename;
    int64_t code_name;
    int64_t code_qualname;                  /* or -1 */
    int64_t code_linetable;
    int64_t code_firstlineno;
    int64_t code_adaptive;                  /* co_code_adaptive, or -1 */
    int64_t code_units;                     /* ob_size: code units of bytecode, or -1 */
    int64_t code_version;                   /* co_version (uint32), or -1 */
    /* int co_framesize: words of a frame of it, where the frame of a call
     * from it begins (3.12+, else -1: checked only where entry frames on
     * the C stack can come between a frame and its caller) */
    int64_t code_framesize;
    int linetable_format;                   /* enum li_linetable_format */

    /* objects */
    int64_t object_type;                    /* ob_type */
    int64_t bytes_size;                     /* ob_size of a bytes object */
    int64_t bytes_data;                     /* ob_sval */
    int64_t unicode_state;
    int64_t unicode_length;
    int64_t unicode_hash;                   /* its hash, -1 until computed */
    int64_t unicode_ascii_size;             /* sizeof(PyASCIIObject): compact ASCII data */
    int64_t unicode_compact_size;           /* sizeof(PyCompactUnicodeObject) */
    /* the state bit field, as masks over its first 32 bits */
    uint32_t unicode_kind_mask;
    int unicode_kind_shift;
    uint32_t unicode_compact_mask;
    uint32_t unicode_ascii_mask;

    /* From an interpreter to its threads' threading.Thread names (names.c) */
    int64_t interp_modules;                 /* sys.modules */
    int64_t type_flags;                     /* tp_flags (unsigned long) */
    int64_t type_dictoffset;                /* tp_dictoffset */
    int64_t heaptype_cached_keys;           /* ht_cached_keys, or -1 */
    uint64_t tpflags_managed_dict;          /* Py_TPFLAGS_MANAGED_DICT, or 0 */
    uint64_t tpflags_inline_values;         /* Py_TPFLAGS_INLINE_VALUES, or 0 */
    int managed_values_kind;                /* enum li_managed_values */
    int64_t managed_dict;                   /* from the object (negative): its dict */
    int64_t managed_values;                 /* LI_VALUES_POINTER, LI_VALUES_INLINE */
    uint64_t values_tag;                    /* LI_VALUES_TAGGED: the tag bits */
    int64_t values_untag;                   /* added to a tagged slot: the values */
    int64_t values_valid;                   /* PyDictValues.valid (uint8), or -1 */
    int64_t values_items;                   /* PyDictValues.values */
    int64_t dict_keys;                      /* ma_keys */
    int64_t dict_values;                    /* ma_values (split tables), else NULL */
    int64_t dict_used;                      /* ma_used: its items */
    int64_t dict_version;                   /* ma_version_tag: new at every change */
    int keys_format;                        /* enum li_dict_keys_format */
    int64_t keys_size;                      /* dk_size, or dk_log2_size */
    int64_t keys_log2_index_bytes;          /* or -1 */
    int64_t keys_kind;                      /* dk_kind (uint8), or -1 */
    int keys_kind_general;                  /* dk_kind of entries with hashes, or -1 */
    int64_t keys_nentries;
    int64_t keys_indices;
    int64_t entry_size, entry_hash, entry_key, entry_value;   /* PyDictKeyEntry */
    int64_t uentry_size, uentry_key, uentry_value;  /* PyDictUnicodeEntry, or -1 */
    uint64_t hash_modulus;                  /* hash(n) of an int 0 <= n is n % this */

    /* PyLongObject: a Thread's _native_id, checked against the thread's */
    int long_format;                        /* enum li_long_format */
    int64_t long_size;                      /* ob_size or lv_tag */
    int64_t long_digits;                    /* ob_digit: uint32 digits, least first */
    int long_digit_bits;                    /* PyLong_SHIFT: bits a digit holds */
    int long_tag_shift;                     /* LI_LONG_TAG: bits below the digits' number */
    uint64_t long_sign_mask;                /* LI_LONG_TAG: the sign's bits */
    uint64_t long_sign_negative;            /* LI_LONG_TAG: their value if negative */
} li_layout;

/* The table of major.minor, or NULL if the version is not supported. */
const li_layout *li_layout_find(int major, int minor);

/* Where _Py_DebugOffsets keeps what the reader needs (layouts/debug_offsets.h). */
typedef struct li_debug_offsets_fields {
    int major, minor;
    int64_t size;          /* bytes to read from _PyRuntime */
    int64_t version;
    int64_t free_threaded;
    int64_t runtime_interpreters_head;
    int64_t interp_size, interp_next, interp_threads_head;
    int64_t interp_gil_locked, interp_gil_holder;
    int64_t tstate_size, tstate_prev, tstate_next, tstate_interp, tstate_current_frame;
    int64_t tstate_thread_id, tstate_native_thread_id, tstate_datastack_chunk;
    int64_t frame_size, frame_previous, frame_executable, frame_instr_ptr, frame_owner;
    int64_t code_size, code_filename, code_name, code_qualname, code_linetable;
    int64_t code_firstlineno, code_adaptive;
    int64_t object_type;
    int64_t bytes_size, bytes_data;
    int64_t unicode_state, unicode_length, unicode_ascii_size;
    int64_t interp_modules, type_flags, dict_keys, dict_values;
} li_debug_offsets_fields;

/* Where the fields of major.minor's _Py_DebugOffsets are, or NULL. */
const li_debug_offsets_fields *li_debug_offsets_find(int major, int minor);

/* Fill *out from *base (the version's table) and the target's
 * _Py_DebugOffsets in buf (n bytes).  0 on success, -1 if buf is not a
 * _Py_DebugOffsets the reader can use (error text in msg). */
int li_layout_from_debug_offsets(li_layout *out, const li_layout *base,
                                 const unsigned char *buf, size_t n,
                                 char *msg, size_t msg_size);

#endif
