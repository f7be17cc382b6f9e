/* Users keep seeing original code objects and offsets.
 *
 * While a frame executes a shadow (hook.c), frame.f_code and frame.f_lasti
 * give the original and the offset in it: the descriptors of those two
 * attributes are replaced by ones that translate.  Function objects,
 * generators and frames that do not execute hold originals anyway; the
 * shadow's line table gives frame.f_lineno and tracebacks their lines.
 */

#include "b310.h"

static PyObject *
frame_code_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyFrameObject *f = (PyFrameObject *)self;
    return Py_NewRef(li_backend_original(f->f_code));
}

static PyObject *
frame_lasti_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyFrameObject *f = (PyFrameObject *)self;
    int lasti = li_lasti(f);
    if (lasti < 0) {
        return PyLong_FromLong(-1);
    }
    li_shadow *map = li_shadow_of(f->f_code);
    if (map != NULL && lasti < map->n_units) {
        lasti = map->orig_op[lasti];
    }
    return PyLong_FromLong(2L * lasti);
}

static PyGetSetDef frame_getsets[] = {
    {"f_code", frame_code_get, NULL, NULL, NULL},
    {"f_lasti", frame_lasti_get, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

int
li_replace_getsets(PyTypeObject *type, PyGetSetDef *defs)
{
    PyObject *dict = type->tp_dict;
    for (PyGetSetDef *def = defs; def->name != NULL; def++) {
        PyObject *old = PyDict_GetItemString(dict, def->name);    /* borrowed */
        if (old == NULL) {
            PyErr_Format(PyExc_SystemError, "%s has no %s", type->tp_name, def->name);
            return -1;
        }
        /* The interpreter's own docstring, so that help() reads the same;
           kept for ever, since the descriptor points into it. */
        PyObject *doc = PyObject_GetAttrString(old, "__doc__");
        if (doc == NULL) {
            return -1;
        }
        if (doc != Py_None && (def->doc = PyUnicode_AsUTF8(doc)) == NULL) {
            Py_DECREF(doc);
            return -1;
        }
        PyObject *descr = PyDescr_NewGetSet(type, def);
        if (descr == NULL) {
            return -1;
        }
        int err = PyDict_SetItemString(dict, def->name, descr);
        Py_DECREF(descr);
        if (err < 0) {
            return -1;
        }
    }
    PyType_Modified(type);
    return 0;
}

int
li_transparency_init(void)
{
    if (li_replace_getsets(&PyFrame_Type, frame_getsets) < 0 || li_caught_init() < 0) {
        return -1;
    }
    return li_jump_init();
}
