/* cover_line_units() and cover_quiet_units() (quiet.h) on an interpreter
 * whose code objects carry _PyCoMonitoringData (CPython 3.12, 3.13).  The
 * including file has the internal headers for INSTRUMENTED_LINE,
 * _PyOpcode_Caches and _Py_CODEUNIT, and defines warm_up(), which resets
 * a specializable instruction's counter as the interpreter does when it
 * takes instrumentation off. */
#ifndef LI_COVER_QUIET_NATIVE_H
#define LI_COVER_QUIET_NATIVE_H

#include "quiet.h"

/* The code's line instrumentation in the shape this file knows: lines
 * instrumented and no INSTRUCTION events (they wrap INSTRUMENTED_LINE in
 * INSTRUMENTED_INSTRUCTION or the other way round); NULL otherwise. */
static _PyCoMonitoringData *
line_instrumentation(PyCodeObject *code)
{
    _PyCoMonitoringData *monitoring = code->_co_monitoring;
    if (monitoring == NULL || monitoring->lines == NULL ||
        monitoring->active_monitors.tools[PY_MONITORING_EVENT_INSTRUCTION] != 0) {
        return NULL;
    }
    return monitoring;
}

/* Whether unit i holds INSTRUMENTED_LINE over an instruction it can put
 * back.  (A cache unit's line data is zero, whatever its bytes.) */
static int
holds_line(PyCodeObject *code, const _PyCoMonitoringData *monitoring, Py_ssize_t i)
{
    uint8_t original = monitoring->lines[i].original_opcode;
    return _PyCode_CODE(code)[i].op.code == INSTRUMENTED_LINE && original != 0 &&
           original != INSTRUMENTED_LINE && original != INSTRUMENTED_INSTRUCTION;
}

int32_t *
cover_line_units(PyCodeObject *code, Py_ssize_t *count)
{
    *count = 0;
    _PyCoMonitoringData *monitoring = line_instrumentation(code);
    if (monitoring == NULL) {
        return NULL;
    }
    Py_ssize_t size = Py_SIZE(code), found = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        found += holds_line(code, monitoring, i);
    }
    if (found == 0) {
        return NULL;
    }
    int32_t *units = PyMem_New(int32_t, (size_t)found);
    if (units == NULL) {
        *count = -1;
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        if (holds_line(code, monitoring, i)) {
            units[(*count)++] = (int32_t)i;
        }
    }
    return units;
}

void
cover_quiet_units(PyCodeObject *code, int tool, const int32_t *units, Py_ssize_t n)
{
    _PyCoMonitoringData *monitoring = line_instrumentation(code);
    if (monitoring == NULL) {
        return;
    }
    uint8_t bit = (uint8_t)(1u << tool);
    /* Without per-unit tool bits the code has one LINE tool, which must be
       this one. */
    if (monitoring->line_tools == NULL &&
        monitoring->active_monitors.tools[PY_MONITORING_EVENT_LINE] != bit) {
        return;
    }
    _Py_CODEUNIT *bytecode = _PyCode_CODE(code);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t i = units[k];
        if (i < 0 || i >= Py_SIZE(code)) {
            continue;
        }
        if (monitoring->line_tools != NULL) {
            monitoring->line_tools[i] &= (uint8_t)~bit;
            if (monitoring->line_tools[i] != 0) {
                continue;   /* another tool still wants LINE there */
            }
        }
        if (!holds_line(code, monitoring, i)) {
            continue;
        }
        uint8_t original = monitoring->lines[i].original_opcode;
        bytecode[i].op.code = original;
        if (_PyOpcode_Caches[original]) {
            warm_up(&bytecode[i + 1]);
        }
    }
}

#endif /* LI_COVER_QUIET_NATIVE_H */
