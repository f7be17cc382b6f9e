/* Frame capacity and moving frames between copies of a code object. */

#include "b311.h"

/* Slots lowimpact gives generator-like objects created after its import,
 * beyond what their code needs: the probe of the UNWIND stub needs three
 * (raising offset, exception, probe) where the code may need one. */
#define GENERATOR_SLACK 2

/* Generators, coroutines and async generators that existed when lowimpact
 * was imported: they lack those slots.  A dict from their address to a weak
 * reference whose callback removes the entry: looking one up runs no Python
 * code, which tracers and tools would see. */
static PyObject *older_generators;

/* Threads that raised the audit event "sys.settrace" and may not have their
 * trace function yet.  CPython sets it after all the audit hooks: Python
 * ones (sys.addaudithook) run after the engine's, and they, or another
 * thread while they run, may turn events on and reach the thread's frames
 * (as may a __del__ of the trace function it replaces).  A mark holds while
 * the frame that raised the event (the caller of sys.settrace, or of the C
 * function that called PyEval_SetTrace) is still at that instruction on its
 * thread's stack; then it goes at the next look (trace_pending()). */
typedef struct {
    uint64_t thread;                /* the thread state's id */
    _PyInterpreterFrame *frame;     /* compared, never read */
    _Py_CODEUNIT *at;               /* its prev_instr then */
} trace_mark;

static trace_mark *marks;   /* PyMem array, `n_marks` used */
static int n_marks, cap_marks;

/* Whether the frame of mark `m` of `ts` is still at its instruction. */
static bool
mark_holds(PyThreadState *ts, const trace_mark *m)
{
    for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
        if (f == m->frame) {
            return f->prev_instr == m->at;
        }
    }
    return false;
}

/* Whether `ts` may still be in a sys.settrace call (li_frames_trace_coming()):
 * drops its marks that no longer hold. */
static bool
trace_pending(PyThreadState *ts)
{
    for (int k = n_marks - 1; k >= 0; k--) {
        if (marks[k].thread != ts->id) {
            continue;
        }
        if (mark_holds(ts, &marks[k])) {
            return true;
        }
        marks[k] = marks[--n_marks];
    }
    return false;
}

int
li_frames_trace_coming(PyThreadState *ts)
{
    /* None for threads gone, nor twice the same.  A thread may have more
       than one: sys.settrace from a __del__ run while the engine handles
       the event of an outer one. */
    (void)trace_pending(ts);
    _PyInterpreterFrame *frame = ts->cframe->current_frame;
    bool known = frame == NULL;   /* nothing to reach before it is set */
    for (int k = n_marks - 1; k >= 0; k--) {
        if (marks[k].thread == ts->id) {
            known = known || (marks[k].frame == frame && marks[k].at == frame->prev_instr);
        }
        else if (!li_thread_alive(ts->interp, marks[k].thread)) {
            marks[k] = marks[--n_marks];
        }
    }
    if (known) {
        return 0;
    }
    if (li_reserve((void **)&marks, &cap_marks, n_marks, sizeof(trace_mark), 4) < 0) {
        return -1;
    }
    marks[n_marks++] = (trace_mark){.thread = ts->id, .frame = frame, .at = frame->prev_instr};
    return 0;
}

/* How many value stack slots a frame on `ts`'s data stack was allocated
 * (its code's stack size then, which an entry trampoline may have raised
 * since), from where its allocation ends: at the next frame it called in
 * the same chunk, else at the top its chunk had when the frame was last in
 * it; plus one when the chunk goes on after that: while a frame runs it is
 * the top of its thread's data stack, and CPython 3.11 never lets the top
 * frame end at the chunk's limit.  A probe uses that slot only during its
 * call, after reading its operand and before writing its result, while
 * frames of callees may come and go there. */
static int
data_stack_capacity(PyThreadState *ts, _PyInterpreterFrame *frame, _PyInterpreterFrame *above,
                    bool traced)
{
    PyObject **stack = frame->localsplus + frame->f_code->co_nlocalsplus;
    for (_PyStackChunk *chunk = ts->datastack_chunk; chunk != NULL; chunk = chunk->previous) {
        PyObject **lo = (PyObject **)chunk;
        PyObject **hi = (PyObject **)((char *)chunk + chunk->size);
        if ((PyObject **)frame < lo || (PyObject **)frame >= hi) {
            continue;
        }
        PyObject **end;
        if (above != NULL && (PyObject **)above > (PyObject **)frame &&
            (PyObject **)above < hi)
        {
            end = (PyObject **)above;
        }
        else if (chunk == ts->datastack_chunk) {
            end = ts->datastack_top;
        }
        else {
            end = &chunk->data[chunk->top];
        }
        /* Except while the thread traces: with f_trace_opcodes, CPython
           calls the trace function between any two units, and its frame
           starts at the data stack's top, over that slot, where a
           trampoline keeps AssertionError or the landing function, or a
           probe its constant, from one unit to the next.  (Frames that
           borrow it as a trace function comes: li_backend_trace_coming().) */
        return (int)(end - stack) + (end < hi && !traced ? 1 : 0);
    }
    /* Not on the data stack (a frame of a C caller): what the code needs. */
    return li_true_stacksize(frame->f_code);
}

int
li_frame_capacity(PyThreadState *ts, _PyInterpreterFrame *frame, _PyInterpreterFrame *above)
{
    if (frame->owner != FRAME_OWNED_BY_GENERATOR) {
        bool traced = ts != NULL && (ts->c_tracefunc != NULL || trace_pending(ts));
        return ts != NULL ? data_stack_capacity(ts, frame, above, traced)
                          : li_true_stacksize(frame->f_code);
    }
    PyGenObject *gen = li_frame_generator(frame);
    /* The generator was sized for the code it was created with, which its
       gi_code keeps (li_frame_set_code leaves it alone); trampolines leave
       the stack size of generator code alone. */
    int allocated = gen->gi_code->co_stacksize;
    bool older = true;
    PyObject *address = PyLong_FromVoidPtr(gen);
    if (address != NULL) {
        older = PyDict_GetItemWithError(older_generators, address) != NULL ||
                PyErr_Occurred();
        Py_DECREF(address);
    }
    PyErr_Clear();
    return allocated + (older ? 0 : GENERATOR_SLACK);
}

int
li_frame_landing_capacity(PyThreadState *ts, _PyInterpreterFrame *frame,
                          _PyInterpreterFrame *here)
{
    /* The slot after its allocation is the frame's from the drop of the
       landing's token on (li_frame_claim_slot()), before any trace function
       can run: the thread counts as tracing until then. */
    return frame->owner == FRAME_OWNED_BY_THREAD ? data_stack_capacity(ts, frame, here, false)
                                                  : li_frame_capacity(ts, frame, here);
}

bool
li_frame_borrows(PyThreadState *ts, _PyInterpreterFrame *frame, _PyInterpreterFrame *above)
{
    return frame->owner != FRAME_OWNED_BY_GENERATOR &&
           data_stack_capacity(ts, frame, above, false) > data_stack_capacity(ts, frame, above, true);
}

void
li_frame_claim_slot(PyThreadState *ts, _PyInterpreterFrame *frame)
{
    /* Every landing comes here: threads that do not trace leave first. */
    if (ts->c_tracefunc == NULL && (n_marks == 0 || !trace_pending(ts))) {
        return;
    }
    /* Its allocation ends at the data stack's top while it is the top
       frame of the thread's current chunk. */
    PyObject **lo = (PyObject **)ts->datastack_chunk;
    if (frame->owner != FRAME_OWNED_BY_THREAD || ts->cframe->current_frame != frame ||
        (PyObject **)frame < lo || (PyObject **)frame >= ts->datastack_top ||
        ts->datastack_top >= ts->datastack_limit)
    {
        return;
    }
    int room = data_stack_capacity(ts, frame, NULL, true);
    if (frame->f_code->co_stacksize > room) {
        /* CPython puts the top back at the frame's start when it returns:
           the slot stays the frame's until then, and frames it calls (a
           trace function's among them) start after it. */
        ts->datastack_top++;
    }
}

int
li_unseen_frames_capacity(PyCodeObject *code)
{
    if (!(code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR))) {
        return li_true_stacksize(code) + 1;
    }
    /* Trampolines leave the stack size of generator code alone. */
    int least = code->co_stacksize + GENERATOR_SLACK;
    Py_ssize_t pos = 0;
    PyObject *address, *ref;
    while (PyDict_Next(older_generators, &pos, &address, &ref)) {
        PyObject *op = PyWeakref_GET_OBJECT(ref);   /* borrowed; None once gone */
        if (!li_is_generator_like(op)) {
            continue;
        }
        PyGenObject *gen = (PyGenObject *)op;
        _PyInterpreterFrame *frame = (_PyInterpreterFrame *)gen->gi_iframe;
        if (gen->gi_frame_state < FRAME_EXECUTING && frame->f_code == code &&
            gen->gi_code->co_stacksize < least)
        {
            least = gen->gi_code->co_stacksize;
        }
    }
    return least;
}

bool
li_older_generator_in(PyCodeObject *code, int low, int high)
{
    if (!(code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR))) {
        return false;   /* no generator runs it: the common case, kept cheap */
    }
    Py_ssize_t pos = 0;
    PyObject *address, *ref;
    while (PyDict_Next(older_generators, &pos, &address, &ref)) {
        PyObject *op = PyWeakref_GET_OBJECT(ref);   /* borrowed; None once gone */
        if (!li_is_generator_like(op) || ((PyGenObject *)op)->gi_frame_state != FRAME_SUSPENDED) {
            continue;
        }
        _PyInterpreterFrame *frame = (_PyInterpreterFrame *)((PyGenObject *)op)->gi_iframe;
        /* It stands at its YIELD_VALUE, and goes on at the unit after. */
        int unit = (int)(frame->prev_instr - _PyCode_CODE(code));
        if (frame->f_code == code && unit + 1 >= low && unit < high) {
            return true;
        }
    }
    return false;
}

/* Weak reference callback: an older generator is gone (another object may
 * get its address). */
static PyObject *
forget_older(PyObject *Py_UNUSED(self), PyObject *ref)
{
    Py_ssize_t pos = 0;
    PyObject *address, *value;
    while (PyDict_Next(older_generators, &pos, &address, &value)) {
        if (value == ref) {
            if (PyDict_DelItem(older_generators, address) < 0) {
                return NULL;
            }
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef forget_older_def = {
    "_forget_older_generator", forget_older, METH_O, NULL,
};

/* Frames moved that have a frame object: tracebacks may hold it, with
 * offsets in the code it ran before (see li_fix_moved_tracebacks). */
typedef struct {
    PyFrameObject *frame_object;    /* strong */
    PyCodeObject *from, *to;        /* strong */
} moved_frame;

static moved_frame *moved;
static int n_moved, cap_moved;

int
li_frame_set_code(_PyInterpreterFrame *frame, PyCodeObject *code, int unit)
{
    li_probes *lp = li_shadow_probes(code);
    if (lp != NULL) {
        li_probes_ready(lp);
    }
    /* Only a frame object that something besides its frame holds can be a
       traceback's (sys._getframe() leaves one on every module frame that
       makes a namedtuple or an Enum, held by nothing once it returned):
       the others need no walk of the heap for their tracebacks. */
    if (frame->frame_obj != NULL && Py_REFCNT(frame->frame_obj) > 1 && frame->f_code != code) {
        if (li_reserve((void **)&moved, &cap_moved, n_moved, sizeof(moved_frame), 4) < 0) {
            return -1;
        }
        moved[n_moved++] = (moved_frame){
            (PyFrameObject *)Py_NewRef(frame->frame_obj),
            (PyCodeObject *)Py_NewRef(frame->f_code), (PyCodeObject *)Py_NewRef(code),
        };
    }
    frame->prev_instr = _PyCode_CODE(code) + unit;
    Py_SETREF(frame->f_code, (PyCodeObject *)Py_NewRef(code));
    return 0;
}

/* Unit `unit` of `from` in `to`, two versions of one code object. */
static int
translate_unit(PyCodeObject *from, PyCodeObject *to, int unit)
{
    li_probes *old = li_shadow_probes(from), *new = li_shadow_probes(to);
    int original = old != NULL ? (unit >= 0 && unit < old->n_units ? li_orig_of(old, unit) : -1)
                               : unit;
    if (new == NULL || original < 0) {
        return original;
    }
    return original < new->n_orig_units ? li_shadow_of(new, original) : -1;
}

static int
fix_traceback(PyObject *op, void *Py_UNUSED(arg))
{
    if (!PyTraceBack_Check(op)) {
        return 0;
    }
    PyTracebackObject *tb = (PyTracebackObject *)op;
    /* In the order of the moves: a frame may have moved twice. */
    for (int k = 0; k < n_moved; k++) {
        if (tb->tb_frame == moved[k].frame_object && tb->tb_lasti >= 0 &&
            tb->tb_lineno == -1)
        {
            int unit = translate_unit(moved[k].from, moved[k].to,
                                      tb->tb_lasti / (int)sizeof(_Py_CODEUNIT));
            tb->tb_lasti = unit < 0 ? -1 : unit * (int)sizeof(_Py_CODEUNIT);
        }
    }
    return 0;
}

void
li_fix_moved_tracebacks(void)
{
    if (n_moved == 0) {
        return;
    }
    /* Every traceback is tracked by the collector. */
    (void)li_walk_heap(fix_traceback, NULL);
    for (int k = 0; k < n_moved; k++) {
        Py_DECREF(moved[k].frame_object);
        Py_DECREF(moved[k].from);
        Py_DECREF(moved[k].to);
    }
    n_moved = 0;
}

int
li_frames_init(void)
{
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *objects = NULL, *callback = NULL;
    int err = -1;
    if (gc == NULL) {
        goto done;
    }
    older_generators = PyDict_New();
    callback = PyCFunction_New(&forget_older_def, NULL);
    objects = PyObject_CallMethod(gc, "get_objects", NULL);
    if (older_generators == NULL || callback == NULL || objects == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); i++) {
        PyObject *op = PyList_GET_ITEM(objects, i);
        if (!li_is_generator_like(op)) {
            continue;
        }
        PyObject *address = PyLong_FromVoidPtr(op);
        PyObject *ref = address != NULL ? PyWeakref_NewRef(op, callback) : NULL;
        int set = ref != NULL ? PyDict_SetItem(older_generators, address, ref) : -1;
        Py_XDECREF(address);
        Py_XDECREF(ref);
        if (set < 0) {
            goto done;
        }
    }
    /* From now on every generator-like object gets more stack slots than its
       code needs (the allocation is basic size + slots), so that it can run
       an instrumented copy that needs more. */
    PyGen_Type.tp_basicsize += GENERATOR_SLACK * sizeof(PyObject *);
    PyCoro_Type.tp_basicsize += GENERATOR_SLACK * sizeof(PyObject *);
    PyAsyncGen_Type.tp_basicsize += GENERATOR_SLACK * sizeof(PyObject *);
    err = 0;
done:
    Py_XDECREF(gc);
    Py_XDECREF(objects);
    Py_XDECREF(callback);
    return err;
}
