/* The per-code work of turning events on (update.c, trampoline.c), kept
 * small: set_events() gives every function's code an entry trampoline, so
 * what each one costs is paid thousands of times in a big program.
 *
 * One walk of the instructions does what the entry trampoline needs of
 * them: where it can go, and co_code cached as CPython shows it (which the
 * trampoline must not change).  Each instruction costs one table lookup
 * (its base form, the units it takes, whether and which way it jumps)
 * instead of the deoptimisation and opcode tests of a general decoder: a
 * walk of a small function's bytecode was most of what arming its entry
 * cost.
 */

#include "b311.h"


/* Per raw opcode (quickened ones too): in the low 16 bits, what turns a
 * unit of it into its base form (by exclusive or); above them, what the
 * scan must look at besides the units the instruction takes (SCAN_STEP):
 * its jump (li_is_jump(), relative to the unit after it), an EXTENDED_ARG
 * prefix, or RESUME. */
enum {
    SCAN_SHIFT = 16,
    SCAN_STEP = 0x0f,
    SCAN_FORWARD = 0x10,
    SCAN_BACKWARD = 0x20,
    SCAN_PREFIX = 0x40,
    SCAN_RESUME = 0x80,
};
static uint32_t info_of[256];
static bool tables_ready;

static void
make_tables(void)
{
    for (int op = 0; op < 256; op++) {
        int base = _PyOpcode_Deopt[op];
        uint32_t scan = 1 + (uint32_t)_PyOpcode_Caches[base];
        assert(scan <= SCAN_STEP);
        if (li_is_jump(base)) {
            scan |= li_is_jump_backward(base) ? SCAN_BACKWARD : SCAN_FORWARD;
        }
        scan |= base == EXTENDED_ARG ? SCAN_PREFIX : base == RESUME ? SCAN_RESUME : 0;
        info_of[op] = (uint32_t)(uint16_t)_Py_MAKECODEUNIT(op ^ base, 0) | scan << SCAN_SHIFT;
    }
    tables_ready = true;
}

/* Unit `unit` of `from` in its base form, into `to` unless NULL; the
 * instruction's scan entry. */
static inline int
take(const _Py_CODEUNIT *restrict from, _Py_CODEUNIT *restrict to, int unit)
{
    uint32_t info = info_of[_Py_OPCODE(from[unit])];
    if (to != NULL) {
        to[unit] = (_Py_CODEUNIT)(from[unit] ^ (uint16_t)info);
    }
    return (int)(info >> SCAN_SHIFT);
}

/* li_entry_scan() of the `n` units `from`; where `to` is not NULL (zeroed,
 * as long), the same walk writes there each instruction in its base form,
 * which leaves co_code with the inline caches zeroed. */
static inline bool
walk(const _Py_CODEUNIT *restrict from, int n, _Py_CODEUNIT *restrict to, int reach,
     int *resume, bool *jumped_into)
{
    int at = -1;
    *jumped_into = false;
    for (int unit = 0; unit < n;) {
        int scan = take(from, to, unit);
        if ((scan & ~SCAN_STEP) == 0) {
            unit += scan;
            continue;
        }
        int here = unit, oparg = 0;
        while ((scan & SCAN_PREFIX) && unit + 1 < n) {
            oparg = (oparg << 8) | _Py_OPARG(from[unit]);
            scan = take(from, to, ++unit);
        }
        oparg = (oparg << 8) | _Py_OPARG(from[unit]);
        unit += scan & SCAN_STEP;
        if ((scan & SCAN_RESUME) && oparg == 0 && at < 0) {
            at = here;
        }
        if (scan & (SCAN_FORWARD | SCAN_BACKWARD)) {
            int target = scan & SCAN_BACKWARD ? unit - oparg : unit + oparg;
            if (at < 0 && target > here) {
                return false;
            }
            if (at >= 0 && target > at && target < at + reach) {
                *jumped_into = true;
            }
        }
    }
    *resume = at;
    return true;
}

/* A bytes object as long as the bytecode of `code`, zeroed (*units: its
 * bytes), or NULL with MemoryError. */
static PyObject *
new_co_code(PyCodeObject *code, _Py_CODEUNIT **units)
{
    size_t size = (size_t)Py_SIZE(code) * sizeof(_Py_CODEUNIT);
    PyObject *co_code = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (co_code != NULL) {
        *units = (_Py_CODEUNIT *)PyBytes_AS_STRING(co_code);
        memset(*units, 0, size);
    }
    return co_code;
}

/* What entry_place() needs of the instructions of `code` (trampoline.c):
 * the unit of its first `RESUME 0` (-1 if none), and whether a jump lands
 * within `reach` units after it.  Returns false where a jump before that
 * RESUME goes forward (3.11 compiles none: the caller keeps away).  It
 * caches co_code too, as the trampoline that follows needs it
 * (li_cache_co_code()). */
bool
li_entry_scan(PyCodeObject *code, int reach, int *resume, bool *jumped_into)
{
    if (!tables_ready) {
        make_tables();
    }
    const _Py_CODEUNIT *from = _PyCode_CODE(code);
    int n = (int)Py_SIZE(code);
    if (code->_co_code != NULL) {
        return walk(from, n, NULL, reach, resume, jumped_into);
    }
    _Py_CODEUNIT *to;
    PyObject *co_code = new_co_code(code, &to);
    if (co_code == NULL) {
        PyErr_Clear();  /* (the trampoline's own caching reports it) */
        return walk(from, n, NULL, reach, resume, jumped_into);
    }
    if (!walk(from, n, to, reach, resume, jumped_into)) {
        Py_DECREF(co_code);   /* (it stopped half way) */
        return false;
    }
    code->_co_code = co_code;
    return true;
}

/* Makes CPython cache `code`'s co_code (PyCode_GetCode()'s work), where
 * the entry scan did not: the bytecode as it reads now, each instruction in
 * its base form and its inline cache zeroed.  0 or -1. */
int
li_cache_co_code(PyCodeObject *code)
{
    if (code->_co_code != NULL) {
        return 0;
    }
    if (!tables_ready) {
        make_tables();
    }
    _Py_CODEUNIT *to;
    PyObject *co_code = new_co_code(code, &to);
    if (co_code == NULL) {
        return -1;
    }
    const _Py_CODEUNIT *from = _PyCode_CODE(code);
    int n = (int)Py_SIZE(code);
    for (int unit = 0; unit < n;) {
        unit += take(from, to, unit) & SCAN_STEP;
    }
    code->_co_code = co_code;
    return 0;
}
