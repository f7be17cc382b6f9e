/* Extension side on 3.10 and 3.11: lowimpact's engine delivers the events (its
 * capi.c), through the capsule lowimpact._engine._capi_backend.  The engine
 * calls C callbacks directly, without vectorcall. */

#include "capi.h"

int
li_ext_init(LowImpact_CAPI *api, PyTypeObject *ccallback_type)
{
    PyObject *module = PyImport_ImportModule("lowimpact._engine");
    if (module == NULL) {
        return -1;
    }
    PyObject *result = PyObject_CallMethod(module, "_set_c_callback_type", "O",
                                           (PyObject *)ccallback_type);
    Py_DECREF(module);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    LowImpact_CAPI *engine =
        (LowImpact_CAPI *)PyCapsule_Import("lowimpact._engine._capi_backend", 0);
    if (engine == NULL) {
        return -1;
    }
    api->enter_scope = engine->enter_scope;
    api->exit_scope = engine->exit_scope;
    api->fire = engine->fire;
    return 0;
}
