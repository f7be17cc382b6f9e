/* Extension side on 3.13+: the interpreter implements PyMonitoring_* itself
 * and lowimpact.h uses its functions; the table leaves them out. */

#include "capi.h"

int
li_ext_init(LowImpact_CAPI *api, PyTypeObject *ccallback_type)
{
    (void)api;
    (void)ccallback_type;
    return 0;
}
