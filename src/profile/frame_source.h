/* The version-specific side of timing Python frames by PEP 523 frame
 * evaluation (profile.c): what a frame being evaluated is, and whether its
 * evaluation is a call as cProfile counts them.  3.11 and newer only: their
 * frames are _PyInterpreterFrame, and the interpreter does not inline a
 * Python-to-Python call while a frame-evaluation function is set, so every
 * Python frame, and every resumption of a generator, is one evaluation. */
#ifndef LOWIMPACT_PROFILE_FRAME_SOURCE_H
#define LOWIMPACT_PROFILE_FRAME_SOURCE_H

#if PY_VERSION_HEX >= 0x030B0000
#define LI_HAVE_FRAME_SOURCE 1

#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"

typedef struct _PyInterpreterFrame li_frame;

static inline PyObject *
li_frame_code(li_frame *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    return frame->f_executable;
#else
    return (PyObject *)frame->f_code;
#endif
}

/* Calling a generator (coroutine, async generator) function evaluates its
 * frame once to make the generator (RETURN_GENERATOR, before PY_START):
 * not a call.  Its resumptions evaluate the frame the generator owns. */
static inline int
li_frame_is_call(li_frame *frame)
{
    const int generator = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR;
    return !(((PyCodeObject *)li_frame_code(frame))->co_flags & generator) ||
           frame->owner == FRAME_OWNED_BY_GENERATOR;
}

#endif
#endif
