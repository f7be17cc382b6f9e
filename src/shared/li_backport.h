/* The C API functions of 3.10 that lowimpact's extensions use, for 3.9,
 * which lacks them: the same contracts, written in terms of 3.9's API; and
 * the few reads whose fast form differs between versions. */
#ifndef LI_BACKPORT_H
#define LI_BACKPORT_H

#include <Python.h>
#if PY_VERSION_HEX < 0x030B0000
#  include <longintrepr.h>
#endif

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
li_new_ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static inline PyObject *
li_xnew_ref(PyObject *o)
{
    Py_XINCREF(o);
    return o;
}

#  define Py_NewRef(o) li_new_ref((PyObject *)(o))
#  define Py_XNewRef(o) li_xnew_ref((PyObject *)(o))

/* PyModule_AddObject steals its reference only on success. */
static inline int
li_module_add_object_ref(PyObject *module, const char *name, PyObject *value)
{
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "PyModule_AddObjectRef() must be called with an "
                            "exception raised if value is NULL");
        }
        return -1;
    }
    Py_INCREF(value);
    if (PyModule_AddObject(module, name, value) < 0) {
        Py_DECREF(value);
        return -1;
    }
    return 0;
}

#  define PyModule_AddObjectRef li_module_add_object_ref
#endif

/* Whether `o` is an int of at most one digit (CPython's ints of up to 30
 * bits), its value then in *value: what a callback that reads offsets on
 * every event needs, without PyLong_AsLong's general conversion. */
static inline int
li_long_one_digit(PyObject *o, long *value)
{
    if (!PyLong_CheckExact(o)) {
        return 0;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        return 0;
    }
    *value = (long)PyUnstable_Long_CompactValue((PyLongObject *)o);
    return 1;
#else
    Py_ssize_t size = Py_SIZE(o);
    if (size < -1 || size > 1) {
        return 0;
    }
    /* (Zero need not have a digit allocated.) */
    *value = size == 0 ? 0 : (long)size * (long)((PyLongObject *)o)->ob_digit[0];
    return 1;
#endif
}

#endif /* LI_BACKPORT_H */
