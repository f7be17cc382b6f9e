/* Private interface of the module lowimpact._capi.
 *
 * capi.c builds the table lowimpact.h reads (the capsule _API) and
 * implements the tool side, which works through lowimpact.monitoring on
 * every version.  The extension side depends on the interpreter, one file
 * per kind:
 *   ext_engine.c  3.11: lowimpact's engine delivers the events
 *   ext_312.c     3.12: the interpreter's sys.monitoring delivers them
 *   ext_none.c    3.13+: the interpreter has the API itself
 */
#ifndef LI_CAPI_H
#define LI_CAPI_H

#include "li_shared.h"

/* Fills in the extension side of `api` (or leaves it NULL); tells the
 * engine, where there is one, the type of C callbacks.  0 or -1. */
int li_ext_init(LowImpact_CAPI *api, PyTypeObject *ccallback_type);

#endif /* LI_CAPI_H */
