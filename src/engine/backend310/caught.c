/* traceback.tb_lasti of an exception caught in a frame running a shadow.
 *
 * The interpreter records the frame's f_lasti, a unit of the shadow, in
 * the traceback entry it adds for the frame.  An exception that leaves the
 * frame has its entries translated there (hook.c); one caught in the frame
 * is kept by the program, and the frame may have finished, or moved to
 * another shadow, before its tb_lasti is read (dis.distb reads it).  So
 * every exception handler of a shadow starts with a marker
 *
 *     LOAD_CONST caught; UNARY_INVERT; POP_TOP
 *
 * whose nb_invert translates the entry of the exception being handled, if
 * it is the frame's own, while the shadow it was made in still runs.  The
 * translated offset is stored as -2 - offset (a handler of the same frame
 * that gets it again, re-raised, leaves it alone) and tb_lasti's getter
 * shows it as the offset.
 */

#include "b310.h"

static inline int
encode(int offset)
{
    return -2 - offset;
}

static PyObject *
caught_invert(PyObject *self)
{
    (void)self;
    PyThreadState *ts = PyThreadState_Get();
    PyFrameObject *f = ts->frame;
    PyObject *tb = ts->exc_info->exc_traceback;
    if (f != NULL && !f->f_trace_lines) {
        li_release_handler_line(f);
    }
    li_shadow *map = f != NULL ? li_shadow_of(f->f_code) : NULL;
    if (map != NULL && tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *t = (PyTracebackObject *)tb;
        if (t->tb_frame == f && t->tb_lasti >= 0 && t->tb_lasti / 2 < map->n_units) {
            t->tb_lasti = encode(2 * map->orig_op[t->tb_lasti / 2]);
        }
    }
    Py_RETURN_NONE;
}

static PyNumberMethods caught_as_number = {
    .nb_invert = caught_invert,
};

static PyTypeObject caught_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.caught",
    .tp_basicsize = sizeof(PyObject),
    .tp_as_number = &caught_as_number,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Translates the traceback entry of an exception a shadow catches.",
};

/* The one instance, kept for ever. */
static PyObject *caught;

PyObject *
li_caught_marker(void)
{
    return caught;
}

/* Offsets translated at a handler, decoded; an entry not translated yet,
 * of a frame still running the shadow it was made in (read by a trace
 * function's 'exception' event, pdb's post-mortem `list`, or a LINE
 * callback of the handler's line), translated now.  A traceback that
 * Python code makes, types.TracebackType(), has an original offset: it is
 * stored encoded (traceback_new()), so that it is never taken for one. */
static PyObject *
traceback_lasti_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyTracebackObject *t = (PyTracebackObject *)self;
    int lasti = t->tb_lasti;
    if (lasti <= -2) {
        return PyLong_FromLong(encode(lasti));
    }
    li_shadow *map = t->tb_frame != NULL ? li_shadow_of(t->tb_frame->f_code) : NULL;
    if (map != NULL && map->original != NULL && lasti >= 0 && lasti / 2 < map->n_units) {
        /* An entry made while a generator ran its original, before it
           resumed onto this shadow, has an original offset: the line
           recorded with the entry tells the two apart, unless both offsets
           are on that line. */
        int orig = 2 * map->orig_op[lasti / 2];
        if (PyCode_Addr2Line(map->original, orig) == t->tb_lineno) {
            lasti = orig;
        }
    }
    return PyLong_FromLong(lasti);
}

/* The interpreter's types.TracebackType(). */
static newfunc traceback_new_orig;

static PyObject *
traceback_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *result = traceback_new_orig(type, args, kwds);
    if (result != NULL && PyTraceBack_Check(result)) {
        PyTracebackObject *t = (PyTracebackObject *)result;
        if (t->tb_lasti >= 0 && t->tb_frame != NULL && li_shadow_of(t->tb_frame->f_code) != NULL) {
            t->tb_lasti = encode(t->tb_lasti);
        }
    }
    return result;
}

static PyGetSetDef traceback_getsets[] = {
    {"tb_lasti", traceback_lasti_get, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

int
li_caught_init(void)
{
    if (caught != NULL) {
        return 0;
    }
    if (PyType_Ready(&caught_type) < 0) {
        return -1;
    }
    caught = PyObject_New(PyObject, &caught_type);
    if (caught == NULL) {
        return -1;
    }
    traceback_new_orig = PyTraceBack_Type.tp_new;
    PyTraceBack_Type.tp_new = traceback_new;
    return li_replace_getsets(&PyTraceBack_Type, traceback_getsets);
}
