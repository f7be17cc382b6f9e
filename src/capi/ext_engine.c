/* Extension side on 3.11: lowimpact's engine delivers the events (its
 * capi.c), through the capsule lowimpact._engine._capi_backend. */

#include "capi.h"

int
li_ext_init(LowImpact_CAPI *api)
{
    PyObject *module = PyImport_ImportModule("lowimpact._engine");
    if (module == NULL) {
        return -1;
    }
    Py_DECREF(module);
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
