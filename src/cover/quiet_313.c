/* quiet.h on CPython 3.13. */
#define Py_BUILD_CORE_MODULE 1
#define NEED_OPCODE_METADATA 1   /* _PyOpcode_Caches, which libpython does not export */
#include <Python.h>
#include "internal/pycore_code.h"
#include "internal/pycore_opcode_metadata.h"

static inline void
warm_up(_Py_CODEUNIT *first_cache)
{
    first_cache->counter = adaptive_counter_warmup();
}

#include "quiet_native.h"
