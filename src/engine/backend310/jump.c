/* frame.f_lineno = n (a trace function's jump) in a frame running a shadow.
 *
 * 3.10's setter decides from the bytecode of f_code which instruction the
 * line starts at and what to pop on the way out of blocks, and its analysis
 * depends on the layout: it tells a comprehension's GET_ITER (no loop) from
 * a for loop's by the CALL_FUNCTION right after it, so a CALL probe there
 * made it pop one value too many.  The jump is therefore decided on the
 * original, where it is what it is natively, and its destination moved to
 * the shadow.  The values on the stack at a probe are the original's at its
 * instruction, so what the setter pops is right for both.
 */

#include "b310.h"

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

static int
frame_lineno_set(PyObject *self, PyObject *value, void *closure)
{
    PyFrameObject *f = (PyFrameObject *)self;
    li_shadow *map = li_shadow_of(f->f_code);
    if (map == NULL || map->original == NULL || f->f_lasti < 0 ||
        f->f_lasti >= map->n_units) {
        return native_lineno->set(self, value, closure);
    }
    /* Borrowed swap: the frame's reference stays the shadow's. */
    PyCodeObject *shadow = f->f_code;
    int lasti = f->f_lasti;
    f->f_code = map->original;
    f->f_lasti = map->orig_start[lasti];
    int err = native_lineno->set(self, value, closure);
    f->f_code = shadow;
    f->f_lasti = err < 0 ? lasti : destination(map, f->f_lasti);
    return err;
}

static PyObject *
frame_lineno_get(PyObject *self, void *closure)
{
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
