/* The constants tuple of a shadow, allocated without counting towards the
 * next collection (b310.h).
 *
 * Natively (3.12) instrumenting a function as it first runs allocates no
 * object.  A shadow is built as its code first starts with events on, and
 * its constants tuple is a container the collector would count: one per
 * function run for the first time, so that a program whose thousands of
 * functions first run after a tool turned events on would pay for
 * collections it never asked for, full ones in a big heap.  3.10 keeps the
 * count in the interpreter's private collector state, so this file alone
 * reads the internal headers (as the 3.11 back end does for the same).
 */

#define Py_BUILD_CORE_MODULE 1
#include "b310.h"
#include "internal/pycore_interp.h"

PyObject *
li_uncounted_tuple(Py_ssize_t size)
{
    struct gc_generation *young = &PyInterpreterState_Get()->gc.generations[0];
    /* At 0 the count is under any threshold that enables collections, so
       that the allocation sets none off; the count it had comes back. */
    int count = young->count;
    young->count = 0;
    PyObject *tuple = PyTuple_New(size);
    young->count = count;
    if (tuple == NULL) {
        return NULL;
    }
    PyObject_GC_UnTrack(tuple);
    return tuple;
}
