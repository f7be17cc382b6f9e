/* frame.f_lineno = n in a frame running a shadow.
 *
 * A trace function's jump (sys.settrace): 3.10's setter decides from the
 * bytecode of f_code which instruction the line starts at and what to pop
 * on the way out of blocks, and its analysis depends on the layout: it
 * tells a comprehension's GET_ITER (no loop) from a for loop's by the
 * CALL_FUNCTION right after it, so a CALL probe there made it pop one value
 * too many.  The jump is therefore decided on the original, where it is
 * what it is natively, and its destination moved to the shadow.  The values
 * on the stack at a probe are the original's at its instruction, so what
 * the setter pops is right for both.
 *
 * A monitoring callback's jump (a debugger's `jump`), which 3.12 allows
 * from LINE, JUMP, BRANCH, PY_RESUME (and PY_YIELD, refused here as on
 * 3.11) callbacks of the event's frame: that frame executes the probe, and 3.10's evaluation loop
 * holds its position and stack pointer in C locals, which it reloads from
 * the frame only after a trace function returns.  So the jump is decided
 * when f_lineno is set, with 3.10's rules on the original's units (lines
 * start where its line table starts a range; no jump into a block, the
 * blocks left are unwound), except that leaving an `except` block is
 * allowed, as 3.12 allows it, the exception it handled going back to the
 * one handled before; and it is taken at the next instruction, the
 * probe's POP_TOP, by a C trace function (jump_trace) put in front of the
 * thread's for that one opcode event.  PY_RESUME is delivered before its
 * frame executes again: that jump moves the frame at once.
 */

#include "b310.h"

_Thread_local int li_noted_event LI_TLS_FAST;
_Thread_local int li_trace_on_leave LI_TLS_FAST;

/* The interpreter's getter and setter of f_lineno (its static table). */
static PyGetSetDef *native_lineno;

/* The shadow unit where a frame of `map` goes on at original unit `orig`:
 * past its PY_START and LINE probes (natively the line jumped to reports no
 * LINE event; the trace function gets its 'line' event all the same). */
static int
destination(li_shadow *map, int orig)
{
    int unit = map->shadow_start[orig];
    for (int i = 0; i < map->n_sites; i++) {
        li_site *s = map->sites[i];
        if (s->orig == orig && (s->event == LI_PY_START || s->event == LI_LINE) &&
            s->unit + s->size > unit) {
            unit = s->unit + s->size;
        }
    }
    return unit;
}

/* ---- blocks: 3.10's view of what a jump may leave or enter ---- */

/* A stack of block kinds, the innermost in the low bits; -1: no code. */
typedef int64_t blocks_t;
enum {
    BLOCK_WITH = 1,
    BLOCK_LOOP = 2,
    BLOCK_TRY = 3,
    BLOCK_EXCEPT = 4,
    /* The handler of a with statement: an except block with the context's
       __exit__ under it. */
    BLOCK_WITH_EXCEPT = 5,
};
#define BLOCK_BITS 3

static inline blocks_t
push_kind(blocks_t b, int kind)
{
    return (b << BLOCK_BITS) | kind;
}

static inline blocks_t
pop_kind(blocks_t b)
{
    return b >> BLOCK_BITS;
}

static inline int
top_kind(blocks_t b)
{
    return (int)(b & ((1 << BLOCK_BITS) - 1));
}

static inline bool
is_except(int kind)
{
    return kind == BLOCK_EXCEPT || kind == BLOCK_WITH_EXCEPT;
}

/* n + 1 signed integers of `size` bytes, all -1 (PyMem), or NULL with an
 * exception set. */
static void *
unknowns(int n, size_t size)
{
    void *a = PyMem_Malloc(((size_t)n + 1) * size);
    if (a == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memset(a, 0xFF, ((size_t)n + 1) * size);
    return a;
}

/* Sets the blocks of unit `u` if unknown; whether that was a unit at or
 * before `from` (the scan must go round again). */
static bool
reach_unit(blocks_t *at, int n, int u, blocks_t b, int from)
{
    if (u < 0 || u >= n || at[u] != -1) {
        return false;
    }
    at[u] = b;
    return u <= from;
}

int
li_decode(const uint8_t *bytes, int n, int u, int *opcode, unsigned int *arg)
{
    unsigned int a = 0;
    while (u < n - 1 && bytes[2 * u] == EXTENDED_ARG) {
        a = (a | bytes[2 * u + 1]) << 8;
        u++;
    }
    *opcode = u < n ? bytes[2 * u] : -1;
    *arg = u < n ? a | bytes[2 * u + 1] : 0;
    return u + 1;
}

/* The pairs of store and delete a name cleanup may use: the compiler
 * stores and deletes the name in one scope, so with the same kind. */
static bool
deletes_what_it_stores(int store, int del)
{
    return (store == STORE_FAST && del == DELETE_FAST) || (store == STORE_NAME && del == DELETE_NAME) ||
           (store == STORE_GLOBAL && del == DELETE_GLOBAL) || (store == STORE_DEREF && del == DELETE_DEREF);
}

bool
li_name_cleanup_at(const uint8_t *bytes, int n, int u, li_name_cleanup *found)
{
    int opcode, del;
    unsigned int deleted;
    u = li_decode(bytes, n, u, &opcode, &found->constant);
    if (opcode != LOAD_CONST) {
        return false;
    }
    u = li_decode(bytes, n, li_decode(bytes, n, u, &found->store, &found->name), &del, &deleted);
    if (!deletes_what_it_stores(found->store, del) || deleted != found->name) {
        return false;
    }
    li_decode(bytes, n, u, &opcode, &found->reraise);
    return opcode == RERAISE;
}

/* Whether the handler at unit `t` of the SETUP_FINALLY starting at unit
 * `setup` (its prefixes included) is one that 3.11+ runs without pushing
 * the exception it handles, and so without a cleanup handler around it:
 * END_ASYNC_FOR's, and the name cleanup of `except E as name:`, whose
 * SETUP_FINALLY follows the handler's POP_TOP; STORE name; POP_TOP (a
 * finally body that does the same ends with RERAISE 0 on 3.10; 3.9 tells
 * them apart by that store alone). */
static bool
bare_handler(const uint8_t *bytes, int n, int setup, int t)
{
    int opcode;
    unsigned int arg;
    li_decode(bytes, n, t, &opcode, &arg);
    if (opcode == END_ASYNC_FOR) {
        return true;
    }
    li_name_cleanup cleanup;
    if (!li_name_cleanup_at(bytes, n, t, &cleanup) ||
        !li_reraise_may_end_name_cleanup((int)cleanup.reraise)) {
        return false;
    }
    /* The handler's POP_TOP; STORE name; POP_TOP before the SETUP_FINALLY
       (the store's prefixes, if any, before it). */
    int s = setup - 2;
    while (s > 0 && bytes[2 * (s - 1)] == EXTENDED_ARG) {
        s--;
    }
    if (s < 1 || bytes[2 * (setup - 1)] != POP_TOP || bytes[2 * (s - 1)] != POP_TOP) {
        return false;
    }
    li_decode(bytes, n, s, &opcode, &arg);
    return opcode == cleanup.store && arg == cleanup.name;
}

/* The blocks each unit of `code` (`n` units) executes in, as 3.10's
 * frame_setlineno works them out: n entries (PyMem), or NULL with an
 * exception set. */
static blocks_t *
blocks_of(PyCodeObject *code, int n)
{
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    blocks_t *at = unknowns(n, sizeof(blocks_t));
    if (at == NULL) {
        return NULL;
    }
    at[0] = 0;
    bool again = true;
    while (again) {
        again = false;
        for (int u = 0; u < n; u++) {
            blocks_t here = at[u];
            if (here < 0) {
                continue;
            }
            int opcode;
            unsigned int arg;
            int next = li_decode(bytes, n, u, &opcode, &arg);
            for (int prefix = u + 1; prefix < next; prefix++) {
                at[prefix] = here;
            }
            int target = li_jump_target(opcode, arg, next);
            blocks_t after = here, there = here;
            switch (opcode) {
            case SETUP_FINALLY:
            case SETUP_WITH:
            case SETUP_ASYNC_WITH:
                there = push_kind(here, opcode == SETUP_FINALLY ? BLOCK_EXCEPT : BLOCK_WITH_EXCEPT);
                after = push_kind(here, opcode == SETUP_FINALLY ? BLOCK_TRY : BLOCK_WITH);
                break;
            case GET_ITER:
            case GET_AITER:
                /* A comprehension's iterator goes straight to its function,
                   which loops: no loop here. */
                if (next >= n || bytes[2 * next] != CALL_FUNCTION) {
                    after = push_kind(here, BLOCK_LOOP);
                }
                break;
            case FOR_ITER:
                there = pop_kind(here);
                break;
            case POP_BLOCK:
            case POP_EXCEPT:
                after = pop_kind(here);
                break;
            case END_ASYNC_FOR:
                after = pop_kind(pop_kind(here));
                break;
            default:
                break;
            }
            if (target >= 0) {
                again |= reach_unit(at, n, target, there, u);
            }
            if (li_falls_through(opcode)) {
                again |= reach_unit(at, n, next, after, u);
            }
            u = next - 1;
        }
    }
    return at;
}

uint8_t *
li_cleanups_of(PyCodeObject *code)
{
    int n = (int)(PyBytes_GET_SIZE(code->co_code) / 2);
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    li_block_stacks stacks;
    if (li_block_stacks_of(code, n, &stacks) < 0) {
        return NULL;
    }
    uint8_t *count = PyMem_Calloc((size_t)n + 1, 1);
    /* Per block: whether it is a handler block whose handler 3.11+ puts a
       cleanup handler around. */
    bool *cleaned = PyMem_Calloc((size_t)stacks.n_blocks + 1, sizeof(bool));
    if (count == NULL || cleaned == NULL) {
        PyMem_Free(count);
        PyMem_Free(cleaned);
        li_block_stacks_clear(&stacks);
        PyErr_NoMemory();
        return NULL;
    }
    for (int b = 1; b < stacks.n_blocks; b++) {
        const li_block *block = &stacks.blocks[b];
        cleaned[b] = block->handler && !(block->opcode == SETUP_FINALLY &&
                                         bare_handler(bytes, n, block->start, block->handler_unit));
    }
    for (int u = 0; u < n; u++) {
        /* Unwinding pops the handler blocks on top down to the first try or
           with body's block, whose handler it enters, or to the bottom. */
        for (int b = stacks.at[u]; b > 0 && stacks.blocks[b].handler; b = stacks.blocks[b].parent) {
            count[u] += cleaned[b];
        }
    }
    PyMem_Free(cleaned);
    li_block_stacks_clear(&stacks);
    return count;
}

static bool
compatible(blocks_t from, blocks_t to)
{
    if (to < 0) {
        return false;
    }
    while (from > to) {
        from = pop_kind(from);
    }
    return from == to;
}

static const char *
why_not(blocks_t to)
{
    if (to < 0) {
        return "code may be unreachable.";
    }
    switch (top_kind(to)) {
    case BLOCK_TRY:
        return "can't jump into the body of a try statement";
    case BLOCK_WITH:
        return "can't jump into the body of a with statement";
    case BLOCK_LOOP:
        return "can't jump into the body of a for loop";
    default:
        return "can't jump into an 'except' block as there's no exception";
    }
}

/* The line starting at each of `n` units of `code` (-1: none starts). */
static int *
line_starts(PyCodeObject *code, int n)
{
    int *starts = unknowns(n, sizeof(int));
    if (starts != NULL) {
        li_unit_line_starts(code, starts, n);
    }
    return starts;
}

/* Where in `code` (original units) a frame whose blocks are `from` goes
 * for line `value`, as 3.10 chooses it: *unit and its blocks *to.  0, or
 * -1 with 3.10's error. */
static int
choose_target(PyCodeObject *code, PyObject *value, blocks_t from, int *unit, blocks_t *to)
{
    int overflow;
    long wanted = PyLong_AsLongAndOverflow(value, &overflow);
    if (overflow || wanted > INT_MAX || wanted < INT_MIN) {
        PyErr_SetString(PyExc_ValueError, "lineno out of range");
        return -1;
    }
    if (wanted < code->co_firstlineno) {
        PyErr_Format(PyExc_ValueError, "line %ld comes before the current code block", wanted);
        return -1;
    }
    int n = (int)(PyBytes_GET_SIZE(code->co_code) / 2);
    int *lines = line_starts(code, n);
    blocks_t *blocks = lines != NULL ? blocks_of(code, n) : NULL;
    if (blocks == NULL) {
        PyMem_Free(lines);
        return -1;
    }
    /* The first line with code from the one asked for on. */
    int line = -1;
    for (int u = 0; u < n; u++) {
        if (lines[u] >= wanted && (line < 0 || lines[u] < line)) {
            line = lines[u];
        }
    }
    const char *refused = "cannot find bytecode for specified line";
    int best = -1;
    blocks_t best_blocks = -1;
    if (line < 0) {
        PyErr_Format(PyExc_ValueError, "line %ld comes after the current code block", wanted);
        refused = NULL;
    }
    for (int u = 0; line >= 0 && u < n; u++) {
        if (lines[u] != line) {
            continue;
        }
        if (compatible(from, blocks[u])) {
            refused = NULL;
            if (blocks[u] > best_blocks) {
                best_blocks = blocks[u];
                best = u;
            }
        }
        else if (refused != NULL) {
            refused = why_not(blocks[u]);
        }
    }
    PyMem_Free(lines);
    PyMem_Free(blocks);
    if (line < 0) {
        return -1;
    }
    if (refused != NULL) {
        PyErr_SetString(PyExc_ValueError, refused);
        return -1;
    }
    *unit = best;
    *to = best_blocks;
    return 0;
}

/* The blocks of original unit `unit` of `code`, or -1 with an exception. */
static blocks_t
blocks_at(PyCodeObject *code, int unit)
{
    int n = (int)(PyBytes_GET_SIZE(code->co_code) / 2);
    blocks_t *blocks = blocks_of(code, n);
    if (blocks == NULL) {
        return -1;
    }
    blocks_t b = unit >= 0 && unit < n ? blocks[unit] : -1;
    PyMem_Free(blocks);
    if (b < 0) {
        PyErr_SetString(PyExc_ValueError, "lowimpact: no jump from unreachable code");
    }
    return b;
}

/* Whether leaving blocks `from` for `to` fits the block stack of `f`
 * (one runtime block per kind but loops, an EXCEPT_HANDLER for except
 * blocks). */
static bool
unwind_fits(PyFrameObject *f, blocks_t from, blocks_t to)
{
    int ib = f->f_iblock;
    for (; from > to; from = pop_kind(from)) {
        int kind = top_kind(from);
        if (kind == BLOCK_LOOP) {
            continue;
        }
        if (ib == 0 || (f->f_blockstack[ib - 1].b_type == EXCEPT_HANDLER) != is_except(kind)) {
            return false;
        }
        ib--;
    }
    return true;
}

static void
pop_value(PyFrameObject *f)
{
    PyObject *v = li_stack_pop(f);
    Py_XDECREF(v);
}

/* Unwinds the blocks `from` has above `to` from `f` (stopped at a trace
 * event: its f_stackdepth is its stack's), as 3.10's setter does, and an
 * except block as POP_EXCEPT ends it. */
static void
unwind(PyThreadState *ts, PyFrameObject *f, blocks_t from, blocks_t to)
{
    for (; from > to; from = pop_kind(from)) {
        int kind = top_kind(from);
        if (kind == BLOCK_LOOP) {
            if (li_stack_depth(f) > 0) {
                pop_value(f);   /* the iterator */
            }
            continue;
        }
        PyTryBlock *b = &f->f_blockstack[--f->f_iblock];
        int level = b->b_level;
        if (is_except(kind)) {
            /* Above the level: the exception handled before, then the
               one being handled. */
            while (li_stack_depth(f) > level + 3) {
                pop_value(f);
            }
            if (li_stack_depth(f) == level + 3) {
                _PyErr_StackItem *exc = ts->exc_info;
                PyObject *type = exc->exc_type, *value = exc->exc_value, *tb = exc->exc_traceback;
                exc->exc_type = li_stack_pop(f);
                exc->exc_value = li_stack_pop(f);
                exc->exc_traceback = li_stack_pop(f);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            }
        }
        while (li_stack_depth(f) > level) {
            pop_value(f);
        }
        if ((kind == BLOCK_WITH || kind == BLOCK_WITH_EXCEPT) && li_stack_depth(f) > 0) {
            pop_value(f);   /* __exit__ */
        }
    }
}

/* ---- a jump decided in a callback, taken after it ---- */

/* The jump the current thread's frame takes after its event's callbacks. */
static _Thread_local struct {
    PyFrameObject *frame;   /* borrowed, compared only; NULL: none */
    PyCodeObject *shadow;   /* borrowed, compared only */
    int at;                 /* the shadow unit of the probe's POP_TOP */
    int extra;              /* values the probe and the branch left above
                               what the blocks at the event account for */
    blocks_t from, to;      /* the blocks at the event, and jumped to */
    int target;             /* original unit */
    char opcodes;           /* the frame's f_trace_opcodes before */
} pending;

/* Whether `f` has a jump pending: it stands at the probe it was decided in
 * (else the jump was lost: a callback took the trace hook away). */
static bool
pending_for(PyFrameObject *f)
{
    return pending.frame == f && f->f_code == pending.shadow && li_lasti(f) + 1 == pending.at;
}

/* The trace function that was in front when jump_trace() took its place. */
static _Thread_local Py_tracefunc behind;

static int jump_trace(PyObject *obj, PyFrameObject *f, int what, PyObject *arg);

/* The jump is no longer pending; `f`, a live frame, is told so if it is
 * its frame (the pointer of another may be stale: it is not followed). */
static void
forget(PyFrameObject *f)
{
    if (pending.frame == f && f->f_code == pending.shadow) {
        f->f_trace_opcodes = pending.opcodes;
    }
    pending.frame = NULL;
}

/* Stands in front of the thread's trace function for one event: the
 * opcode event of the probe's POP_TOP, where the frame jumps; any other
 * event (the callback raised) forgets the jump.  Every event goes on to
 * the function behind, but the one it takes. */
static int
jump_trace(PyObject *obj, PyFrameObject *f, int what, PyObject *arg)
{
    PyThreadState *ts = PyThreadState_Get();
    Py_tracefunc next = behind;
    if (ts->c_tracefunc == jump_trace) {
        /* (Else running.c stands in front, and passes events on to this
           function until it gives the thread its trace function back.) */
        li_set_tracefunc(ts, next);
        behind = NULL;
    }
    if (what == PyTrace_OPCODE && pending.frame == f && f->f_code == pending.shadow &&
        li_lasti(f) == pending.at)
    {
        li_shadow *map = li_shadow_of(f->f_code);
        f->f_trace_opcodes = pending.opcodes;
        pending.frame = NULL;
        for (int k = 0; k < pending.extra && li_stack_depth(f) > 0; k++) {
            pop_value(f);
        }
        unwind(ts, f, pending.from, pending.to);
        /* The loop goes on at f_lasti. */
        int target = pending.target;
        while (target > 0 && map->shadow_start[target] < 0) {
            target--;   /* (inside an instruction: its start) */
        }
        li_set_lasti(f, destination(map, target));
        return 0;
    }
    forget(f);
    return next != NULL ? next(obj, f, what, arg) : 0;
}

/* The probe of `event` that frame `f` executes, or NULL.  (Only the
 * frame that delivers an event stands in a probe of it: no event is
 * delivered while callbacks run.) */
static li_site *
firing_site(PyFrameObject *f, int event)
{
    li_shadow *map = li_shadow_of(f->f_code);
    if (map == NULL || map->original == NULL || !li_frame_executing(f)) {
        return NULL;
    }
    /* (The units of a BRANCH site that falls through cover its twin's.) */
    li_site *found = NULL;
    for (int i = 0; i < map->n_sites; i++) {
        li_site *s = map->sites[i];
        if (s->event == event && s->unit <= li_lasti(f) && li_lasti(f) < s->unit + s->size &&
            (found == NULL || s->unit > found->unit)) {
            found = s;
        }
    }
    return found;
}

/* Where the frame of BRANCH site `s` stands as its callbacks run (the
 * branch taken or not), in original units, and how many values it has
 * there above those of the instruction's blocks (FOR_ITER's next value,
 * the kept value of JUMP_IF_*_OR_POP).  -1 with an exception. */
static int
branch_position(li_site *s, int *extra)
{
    long dest = PyLong_AsLong(s->dest);
    if (dest < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "lowimpact: a branch without destination");
        }
        return -1;
    }
    PyCodeObject *code = s->shadow->original;
    int opcode = ((const uint8_t *)PyBytes_AS_STRING(code->co_code))[2 * s->orig];
    bool taken = dest != 2L * (s->orig + 1);
    *extra = (opcode == FOR_ITER && !taken) ||
             ((opcode == JUMP_IF_FALSE_OR_POP || opcode == JUMP_IF_TRUE_OR_POP) && taken);
    return (int)(dest / 2);
}

/* Decides where `f`, a frame of `original` in blocks `from`, goes for line
 * `value`, checked from blocks `checked` (those of an earlier jump from the
 * same event): *target (original unit) and its blocks *to; the locals left
 * unbound get None, with 3.12's warning.  0, or -1 with an exception set
 * (the frame unchanged, but for the locals if the warning failed). */
static int
decide(PyFrameObject *f, PyCodeObject *original, PyObject *value, blocks_t from,
       blocks_t checked, int *target, blocks_t *to)
{
    if (choose_target(original, value, checked, target, to) < 0) {
        return -1;
    }
    if (!unwind_fits(f, from, *to)) {
        PyErr_SetString(PyExc_ValueError,
                        "lowimpact: the blocks of this frame are not its code's; no jump");
        return -1;
    }
    /* As 3.12 does: locals the compiler proved bound where the frame goes
       may not be; they get None, with a warning (which may fail). */
    int unbound = 0;
    for (int k = 0; k < original->co_nlocals; k++) {
        unbound += f->f_localsplus[k] == NULL;
    }
    if (unbound && PyErr_WarnFormat(PyExc_RuntimeWarning, 0, "assigning None to %d unbound local%s",
                                    unbound, unbound == 1 ? "" : "s") < 0)
    {
        return -1;
    }
    for (int k = 0; k < original->co_nlocals; k++) {
        if (f->f_localsplus[k] == NULL) {
            f->f_localsplus[k] = Py_NewRef(Py_None);
        }
    }
    return 0;
}

/* The frame a PY_RESUME callback moved, while it has not resumed: its
 * f_lasti is the unit before its target, whose line is not the target's. */
static _Thread_local struct {
    PyFrameObject *frame;   /* borrowed, compared only */
    int lasti;
    int line;
} moved;

/* A PY_RESUME callback's jump: hook.c delivers the event before the frame
 * executes again, with the value sent on its stack, so the frame moves at
 * once (past the target's LINE probe when it is suspended on a shadow; on
 * the original, the shadow it starts on reports that LINE).  0, or -1 with
 * an exception set. */
static int
jump_at_resume(PyThreadState *ts, PyFrameObject *f, PyObject *value)
{
    /* The event's frame: under the callback's, the thread's frame as the
       event is delivered. */
    PyFrameObject *below = ts->frame;
    while (below != NULL && below != f && li_frame_executing(below)) {
        below = below->f_back;
    }
    li_shadow *map = li_shadow_of(f->f_code);
    PyCodeObject *original = map != NULL ? map->original : f->f_code;
    int n = map != NULL ? map->n_units : (int)(PyBytes_GET_SIZE(f->f_code->co_code) / 2);
    int unit = li_lasti(f) + 1;
    if (below != f || !li_frame_suspended(f) || original == NULL || unit <= 0 ||
        unit >= n || li_stack_depth(f) < 1)
    {
        PyErr_SetString(PyExc_ValueError,
                        "lowimpact: f_lineno can only be set on the frame of the event "
                        "being delivered");
        return -1;
    }
    int from_unit = map != NULL ? map->orig_start[unit] : unit;
    blocks_t from = blocks_at(original, from_unit);
    int target;
    blocks_t to;
    if (from < 0 || decide(f, original, value, from, from, &target, &to) < 0) {
        return -1;
    }
    pop_value(f);   /* the value sent */
    unwind(ts, f, from, to);
    if (map != NULL) {
        while (target > 0 && map->shadow_start[target] < 0) {
            target--;
        }
        target = destination(map, target);
    }
    li_set_lasti(f, target - 1);
    moved.frame = f;
    moved.lasti = li_lasti(f);
    moved.line = PyCode_Addr2Line(original, 2 * (map != NULL ? map->orig_start[target] : target));
    return 0;
}

/* frame.f_lineno = value from a callback of `event`.  0, or -1 with an
 * exception set. */
static int
set_from_callback(PyThreadState *ts, PyFrameObject *f, PyObject *value, int event)
{
    if (!PyLong_CheckExact(value)) {
        PyErr_SetString(PyExc_ValueError, "lineno must be an integer");
        return -1;
    }
    const char *refused = li_jump_refusal(event);
    if (refused != NULL) {
        PyErr_SetString(PyExc_ValueError, refused);
        return -1;
    }
    if (event == LI_PY_RESUME) {
        return jump_at_resume(ts, f, value);
    }
    li_site *s = firing_site(f, event);
    if (s == NULL) {
        /* Another frame than the event's, or a frame reached while
           running (running.c), which executes other code than its
           probes'. */
        PyErr_SetString(PyExc_ValueError,
                        "lowimpact: f_lineno can only be set on the frame of the event "
                        "being delivered");
        return -1;
    }
    PyCodeObject *original = s->shadow->original;
    /* The probe's own value (UNARY_INVERT's result) is on the stack at
       its POP_TOP. */
    int extra = 1;
    int from_unit = s->orig;
    if (s->event == LI_BRANCH) {
        int branch_extra = 0;
        if ((from_unit = branch_position(s, &branch_extra)) < 0) {
            return -1;
        }
        extra += branch_extra;
    }
    bool again = pending_for(f);
    blocks_t from = again ? pending.from : blocks_at(original, from_unit);
    int target;
    blocks_t to;
    /* A second jump from the same event goes on from the first. */
    if (from < 0 || decide(f, original, value, from, again ? pending.to : from, &target, &to) < 0) {
        return -1;
    }
    /* Python code ran since (the warning): it may have set f_lineno too;
       this setting comes last. */
    if (!pending_for(f)) {
        forget(f);
        pending.opcodes = f->f_trace_opcodes;
        pending.frame = f;
        pending.shadow = f->f_code;
    }
    pending.at = li_lasti(f) + 1;    /* the probe's POP_TOP */
    pending.extra = extra;
    pending.from = from;
    pending.to = to;
    pending.target = target;
    /* The probe's POP_TOP makes an opcode event, where the loop reloads
       the frame's position (leaving the callback turns use_tracing on). */
    f->f_trace_opcodes = 1;
    if (ts->c_tracefunc != jump_trace) {
        behind = ts->c_tracefunc;
        li_set_tracefunc(ts, jump_trace);
    }
    return 0;
}

static int
frame_lineno_set(PyObject *self, PyObject *value, void *closure)
{
    PyFrameObject *f = (PyFrameObject *)self;
    PyThreadState *ts = PyThreadState_Get();
    if (value != NULL && ts->tracing && li_noted_event > 0) {
        return set_from_callback(ts, f, value, li_noted_event - 1);
    }
    li_shadow *map = li_shadow_of(f->f_code);
    if (map == NULL || map->original == NULL || li_lasti(f) < 0 ||
        li_lasti(f) >= map->n_units) {
        return native_lineno->set(self, value, closure);
    }
    /* Borrowed swap: the frame's reference stays the shadow's. */
    PyCodeObject *shadow = f->f_code;
    int lasti = li_lasti(f);
    f->f_code = map->original;
    li_set_lasti(f, map->orig_start[lasti]);
    int err = native_lineno->set(self, value, closure);
    f->f_code = shadow;
    li_set_lasti(f, err < 0 ? lasti : destination(map, li_lasti(f)));
    return err;
}

/* A frame whose jump is pending reads its target line (a frame at its
 * PY_START probe stands before its first instruction, on the `def` line:
 * start.c). */
static PyObject *
frame_lineno_get(PyObject *self, void *closure)
{
    PyFrameObject *f = (PyFrameObject *)self;
    li_shadow *map = li_shadow_of(f->f_code);
    if (map != NULL && map->original != NULL && pending_for(f)) {
        /* It has jumped, as far as Python code can tell. */
        return PyLong_FromLong(PyCode_Addr2Line(map->original, 2 * pending.target));
    }
    if (moved.frame == f && li_lasti(f) == moved.lasti && li_frame_suspended(f)) {
        return PyLong_FromLong(moved.line);
    }
    return native_lineno->get(self, closure);
}

static PyGetSetDef lineno_getsets[] = {
    {"f_lineno", frame_lineno_get, frame_lineno_set, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

int
li_jump_init(void)
{
    PyObject *old = PyDict_GetItemString(PyFrame_Type.tp_dict, "f_lineno");    /* borrowed */
    if (old == NULL || !Py_IS_TYPE(old, &PyGetSetDescr_Type)) {
        PyErr_SetString(PyExc_SystemError, "frame has no f_lineno descriptor");
        return -1;
    }
    PyGetSetDef *def = ((PyGetSetDescrObject *)old)->d_getset;
    if (def == lineno_getsets) {
        return 0;   /* in place since a first initialisation */
    }
    native_lineno = def;
    return li_replace_getsets(&PyFrame_Type, lineno_getsets);
}
