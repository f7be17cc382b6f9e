/* The per-code work of turning events on (update.c, trampoline.c), kept
 * small: set_events() gives every function's code an entry trampoline, so
 * what each one costs is paid thousands of times in a big program.
 *
 * Both passes below walk the instructions with one table lookup each (the
 * units an instruction takes, whether and which way it jumps) instead of the
 * deoptimisation and opcode tests of a general decoder: a walk of a small
 * function's bytecode was most of what arming its entry cost.
 */

#include "b311.h"


/* Per raw opcode (quickened ones too): its base form; the units of its
 * inline cache; and what the scan must look at, besides the units the
 * instruction takes (SCAN_STEP): its jump (li_is_jump(), relative to the
 * unit after it), an EXTENDED_ARG prefix, or RESUME. */
enum {
    SCAN_STEP = 0x0f,
    SCAN_FORWARD = 0x10,
    SCAN_BACKWARD = 0x20,
    SCAN_PREFIX = 0x40,
    SCAN_RESUME = 0x80,
};
static uint8_t base_of[256];
static uint8_t caches_of[256];
static uint8_t scan_of[256];
static bool tables_ready;

static void
make_tables(void)
{
    for (int op = 0; op < 256; op++) {
        int base = _PyOpcode_Deopt[op];
        base_of[op] = (uint8_t)base;
        caches_of[op] = (uint8_t)_PyOpcode_Caches[base];
        int scan = 1 + _PyOpcode_Caches[base];
        assert(scan <= SCAN_STEP);
        if (li_is_jump(base)) {
            scan |= li_is_jump_backward(base) ? SCAN_BACKWARD : SCAN_FORWARD;
        }
        scan |= base == EXTENDED_ARG ? SCAN_PREFIX : base == RESUME ? SCAN_RESUME : 0;
        scan_of[op] = (uint8_t)scan;
    }
    tables_ready = true;
}

/* What entry_place() needs of the instructions of `code` (trampoline.c):
 * the unit of its first `RESUME 0` (-1 if none), and whether a jump lands
 * within `reach` units after it.  Returns false where a jump before that
 * RESUME goes forward (3.11 compiles none: the caller keeps away). */
bool
li_entry_scan(PyCodeObject *code, int reach, int *resume, bool *jumped_into)
{
    if (!tables_ready) {
        make_tables();
    }
    /* A unit is two bytes, the opcode first, whatever the byte order. */
    const uint8_t *bytes = (const uint8_t *)_PyCode_CODE(code);
    int n = (int)Py_SIZE(code), at = -1;
    *jumped_into = false;
    for (int unit = 0; unit < n;) {
        int scan = scan_of[bytes[2 * unit]];
        if ((scan & ~SCAN_STEP) == 0) {
            unit += scan;
            continue;
        }
        int here = unit, oparg = 0;
        while ((scan & SCAN_PREFIX) && unit + 1 < n) {
            oparg = (oparg << 8) | bytes[2 * unit + 1];
            scan = scan_of[bytes[2 * ++unit]];
        }
        oparg = (oparg << 8) | bytes[2 * unit + 1];
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

/* Makes CPython cache `code`'s co_code (PyCode_GetCode()'s work, in a
 * loop of a few instructions a unit): the bytecode as it reads now, each
 * instruction in its base form and its inline cache zeroed.  0 or -1. */
int
li_cache_co_code(PyCodeObject *code)
{
    if (code->_co_code != NULL) {
        return 0;
    }
    if (!tables_ready) {
        make_tables();
    }
    Py_ssize_t size = Py_SIZE(code) * (Py_ssize_t)sizeof(_Py_CODEUNIT);
    PyObject *co_code = PyBytes_FromStringAndSize(NULL, size);
    if (co_code == NULL) {
        return -1;
    }
    const uint8_t *from = (const uint8_t *)_PyCode_CODE(code);
    uint8_t *to = (uint8_t *)PyBytes_AS_STRING(co_code);
    /* The inline caches zeroed in one go (a loop per instruction cost
       more than the walk); the walk writes the other units. */
    memset(to, 0, (size_t)size);
    for (Py_ssize_t i = 0; i < size;) {
        uint8_t op = from[i];
        to[i] = base_of[op];
        to[i + 1] = from[i + 1];
        i += 2 * (1 + caches_of[op]);
    }
    code->_co_code = co_code;
    return 0;
}
