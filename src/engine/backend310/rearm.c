/* DISABLE marks forgotten when CPython would forget them.
 *
 * CPython 3.12 instruments a code object again as a frame of it starts or
 * resumes after the events changed, and then forgets the marks of the tools
 * whose selection of an event changed since the last time
 * (li_code_state_refresh()); the code objects of frames running when the
 * events change are instrumented at once.
 *
 * While some tool wants events, the frame evaluation function sees every
 * frame start and resume, and refreshes the code state the first time after
 * a change (hook.c); the frames running are reached when the events change
 * (running.c).  While no tool wants any, no hook is installed and nothing
 * of ours runs as a frame starts, yet a code object that starts then must
 * forget marks when the events come back.  3.10 makes a frame from the
 * frame its code object's last frame left behind (co_zombieframe), when it
 * has one.  So as the hook goes, each code object whose refresh would
 * forget marks gets such a frame (made if it has none), marked as not
 * taken; when the hook comes back, one whose frame was taken started
 * meanwhile, and the refresh due then happens now.  That costs nothing to
 * any frame meanwhile.  A suspended generator that resumes meanwhile takes
 * no frame: it keeps its marks (where 3.12 forgets them).
 */

#include "b310.h"

/* What f_lasti of a watched zombie frame says; a frame made from it starts
 * at -1. */
#define LI_NOT_TAKEN INT_MIN

typedef struct {
    li_code_state *cs;          /* borrowed: it leaves the list as it goes */
    PyFrameObject *zombie;      /* borrowed, the code's when it was watched */
} li_watched;

static li_watched *watched;     /* owned (PyMem) */
static int n_watched, cap_watched;

/* The zombie frame of `code`, made if it has none.  Borrowed; NULL with an
 * exception set, or without one if it has none even so. */
static PyFrameObject *
zombie_of(PyThreadState *ts, PyCodeObject *code, PyObject *globals)
{
    if (code->co_zombieframe == NULL) {
        PyFrameObject *f = PyFrame_New(ts, code, globals, NULL);
        if (f == NULL) {
            return NULL;
        }
        /* Its deallocation leaves it behind as the code's zombie. */
        Py_DECREF(f);
    }
    return code->co_zombieframe;
}

/* Watches `cs`, whose code has the zombie frame `z`.  0, or -1 with an
 * exception set. */
static int
watch(li_code_state *cs, PyFrameObject *z)
{
    li_b310 *b = cs->backend;
    if (b == NULL) {
        /* (Epoch 0: its shadow is chosen as it next starts.) */
        if ((b = PyMem_Calloc(1, sizeof(li_b310))) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        cs->backend = b;
    }
    if (li_reserve((void **)&watched, &cap_watched, n_watched, sizeof(li_watched), 16) < 0) {
        return -1;
    }
    z->f_lasti = LI_NOT_TAKEN;
    watched[n_watched++] = (li_watched){cs, z};
    b->watch_slot = n_watched;
    return 0;
}

int
li_watch_begin(void)
{
    PyThreadState *ts = PyThreadState_Get();
    PyObject *globals = NULL;   /* owned: an empty dict for the frames made */
    int err = 0;
    for (li_code_state *cs = li_marked_codes(), *next; cs != NULL && err == 0; cs = next) {
        next = cs->marked.next;
        if (cs->disable_epoch != li_reg.disable_epoch) {
            li_code_state_unlist_marked(cs);    /* restart_events() voided them */
            continue;
        }
        li_b310 *b = cs->backend;
        if ((b != NULL && b->watch_slot != 0) || !li_code_state_refresh_forgets(cs)) {
            continue;
        }
        if (globals == NULL && (globals = PyDict_New()) == NULL) {
            err = -1;
            break;
        }
        PyFrameObject *z = zombie_of(ts, cs->code, globals);
        if (z != NULL) {
            err = watch(cs, z);
        }
        else if (PyErr_Occurred()) {
            err = -1;
        }
        else {
            /* Nothing tells whether it starts: it forgets now rather
               than never. */
            li_code_state_refresh_unwanted(cs);
        }
    }
    Py_XDECREF(globals);
    return err;
}

bool
li_watch_end(void)
{
    bool forgot = false;
    while (n_watched > 0) {
        li_watched w = watched[--n_watched];
        ((li_b310 *)w.cs->backend)->watch_slot = 0;
        /* (The frame is only read while it is still the code's.) */
        if (w.cs->code->co_zombieframe == w.zombie && w.zombie->f_lasti == LI_NOT_TAKEN) {
            w.zombie->f_lasti = -1;
        }
        else {
            li_code_state_refresh_unwanted(w.cs);
            forgot = true;
        }
    }
    return forgot;
}

void
li_unwatch(li_code_state *cs)
{
    li_b310 *b = cs->backend;
    int slot = b->watch_slot;
    if (slot == 0) {
        return;
    }
    b->watch_slot = 0;
    watched[slot - 1] = watched[--n_watched];
    if (slot - 1 < n_watched) {
        ((li_b310 *)watched[slot - 1].cs->backend)->watch_slot = slot;
    }
}
