/* quiet.h on CPython 3.12. */
#define Py_BUILD_CORE_MODULE 1
#define NEED_OPCODE_TABLES 1   /* _PyOpcode_Caches, which libpython does not export */
#include <Python.h>
#include "internal/pycore_code.h"
#include "internal/pycore_instruments.h"
#include "internal/pycore_opcode.h"

static inline void
warm_up(_Py_CODEUNIT *first_cache)
{
    first_cache->cache = adaptive_counter_warmup();
}

#include "quiet_native.h"
