/* The per-version tables, and 3.13's offsets taken from the target. */
#include "layout.h"

#include <stdio.h>
#include <string.h>

#include "layouts/py309.h"
#include "layouts/py310.h"
#include "layouts/py311.h"
#include "layouts/py312.h"
#include "layouts/py313.h"
#include "layouts/debug_offsets_py313.h"

static const li_layout *const layouts[] = {
    &li_layout_py309, &li_layout_py310, &li_layout_py311, &li_layout_py312, &li_layout_py313,
};

static const li_debug_offsets_fields *const debug_offsets[] = {
    &li_debug_offsets_py313,
};

const li_layout *
li_layout_find(int major, int minor)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        if (layouts[i]->major == major && layouts[i]->minor == minor) {
            return layouts[i];
        }
    }
    return NULL;
}

const li_debug_offsets_fields *
li_debug_offsets_find(int major, int minor)
{
    for (size_t i = 0; i < sizeof debug_offsets / sizeof debug_offsets[0]; i++) {
        if (debug_offsets[i]->major == major && debug_offsets[i]->minor == minor) {
            return debug_offsets[i];
        }
    }
    return NULL;
}

static int64_t
field(const unsigned char *buf, int64_t at)
{
    uint64_t value;
    memcpy(&value, buf + at, sizeof value);
    return (int64_t)value;
}

int
li_layout_from_debug_offsets(li_layout *out, const li_layout *base,
                             const unsigned char *buf, size_t n, char *msg, size_t msg_size)
{
    const li_debug_offsets_fields *d = li_debug_offsets_find(base->major, base->minor);
    if (d == NULL || (size_t)d->size > n) {
        snprintf(msg, msg_size, "no _Py_DebugOffsets description for %d.%d",
                 base->major, base->minor);
        return -1;
    }
    if (memcmp(buf, "xdebugpy", 8) != 0) {
        snprintf(msg, msg_size, "_Py_DebugOffsets cookie missing");
        return -1;
    }
    if (field(buf, d->free_threaded) != 0) {
        snprintf(msg, msg_size, "free-threaded builds are not supported");
        return -1;
    }
    *out = *base;
    out->runtime_interpreters_head = field(buf, d->runtime_interpreters_head);
    out->interp_size = field(buf, d->interp_size);
    out->interp_next = field(buf, d->interp_next);
    out->interp_threads_head = field(buf, d->interp_threads_head);
    out->interp_gil_locked = field(buf, d->interp_gil_locked);
    out->interp_gil_holder = field(buf, d->interp_gil_holder);
    out->tstate_size = field(buf, d->tstate_size);
    out->tstate_prev = field(buf, d->tstate_prev);
    out->tstate_next = field(buf, d->tstate_next);
    out->tstate_interp = field(buf, d->tstate_interp);
    out->tstate_frame = field(buf, d->tstate_current_frame);
    out->tstate_thread_id = field(buf, d->tstate_thread_id);
    out->tstate_native_thread_id = field(buf, d->tstate_native_thread_id);
    out->tstate_datastack_chunk = field(buf, d->tstate_datastack_chunk);
    out->frame_size = field(buf, d->frame_size);
    out->frame_back = field(buf, d->frame_previous);
    out->frame_code = field(buf, d->frame_executable);
    out->frame_instr = field(buf, d->frame_instr_ptr);
    out->frame_owner = field(buf, d->frame_owner);
    /* _Py_DebugOffsets has no stacktop: the headers' offset holds only for
     * a frame laid out as the headers lay it out (a build with other
     * options may differ; its frame size is sizeof, the headers' the offset
 * of localsplus); elsewhere the walk goes without that check. */
    if (out->frame_back != base->frame_back || out->frame_code != base->frame_code
        || out->frame_instr != base->frame_instr || out->frame_owner != base->frame_owner
        || base->frame_stacktop + 4 > out->frame_size) {
        out->frame_stacktop = -1;
    }
    out->code_filename = field(buf, d->code_filename);
    out->code_name = field(buf, d->code_name);
    out->code_qualname = field(buf, d->code_qualname);
    out->code_linetable = field(buf, d->code_linetable);
    out->code_firstlineno = field(buf, d->code_firstlineno);
    out->code_adaptive = field(buf, d->code_adaptive);
    /* Nor _co_monitoring, which lies between co_linetable and
     * co_code_adaptive, nor co_framesize, between co_firstlineno and
     * co_linetable: the headers' offsets hold where those are the headers'
     * (else a traced target's returns go unseen under INSTRUMENTED_LINE,
     * and a callback's frame may show under another's caller). */
    if (out->code_firstlineno != base->code_firstlineno
        || out->code_linetable != base->code_linetable
        || out->code_adaptive != base->code_adaptive) {
        out->code_monitoring = -1;
        out->code_framesize = -1;
    }
    /* The code object's head up to its bytecode holds every field read. */
    out->code_size = out->code_adaptive;
    out->object_type = field(buf, d->object_type);
    out->bytes_size = field(buf, d->bytes_size);
    out->bytes_data = field(buf, d->bytes_data);
    out->unicode_state = field(buf, d->unicode_state);
    out->unicode_length = field(buf, d->unicode_length);
    out->unicode_ascii_size = field(buf, d->unicode_ascii_size);
    out->interp_modules = field(buf, d->interp_modules);
    out->type_flags = field(buf, d->type_flags);
    out->dict_keys = field(buf, d->dict_keys);
    out->dict_values = field(buf, d->dict_values);
    /* Sanity: every field lies inside its structure, and no structure is
     * implausibly large (a corrupt or foreign block would fail this). */
    const int64_t limit = 1 << 20;
    int64_t fields_in_interp[] = {out->interp_next, out->interp_threads_head,
                                  out->interp_gil_locked, out->interp_gil_holder,
                                  out->interp_modules};
    int64_t fields_in_tstate[] = {out->tstate_prev, out->tstate_next, out->tstate_interp,
                                  out->tstate_frame, out->tstate_thread_id,
                                  out->tstate_native_thread_id, out->tstate_datastack_chunk};
    int64_t fields_in_frame[] = {out->frame_back, out->frame_code, out->frame_instr,
                                 out->frame_owner};
    /* The walk copies a frame and a code object's head into buffers of
       LI_MAX_FRAME_SIZE and LI_MAX_CODE_HEAD bytes, a str's head into 256. */
    int64_t fields_in_code[] = {out->code_filename, out->code_name, out->code_qualname,
                                out->code_linetable, out->code_firstlineno, out->object_type};
    int64_t fields_in_str[] = {out->unicode_state, out->unicode_length, out->object_type};
    int ok = out->interp_size > 0 && out->interp_size < limit && out->tstate_size > 0
             && out->tstate_size < limit && out->frame_size > 0
             && out->frame_size <= LI_MAX_FRAME_SIZE && out->code_size > 0
             && out->code_size <= LI_MAX_CODE_HEAD && out->unicode_ascii_size > 0
             && out->unicode_ascii_size + 16 <= 256 && out->bytes_size >= 0
             && out->bytes_size < limit && out->bytes_data >= 0 && out->bytes_data < limit
             /* (A type object and a dict are a few hundred and a few dozen
                bytes: their sizes are not published.) */
             && out->type_flags >= 0 && out->type_flags < 4096 && out->dict_keys >= 0
             && out->dict_keys < 256 && out->dict_values >= 0 && out->dict_values < 256;
    for (size_t i = 0; ok && i < sizeof fields_in_code / sizeof fields_in_code[0]; i++) {
        ok = fields_in_code[i] >= 0 && fields_in_code[i] <= out->code_size - 8;
    }
    for (size_t i = 0; ok && i < sizeof fields_in_str / sizeof fields_in_str[0]; i++) {
        ok = fields_in_str[i] >= 0 && fields_in_str[i] <= out->unicode_ascii_size - 8;
    }
    for (size_t i = 0; ok && i < sizeof fields_in_interp / sizeof fields_in_interp[0]; i++) {
        ok = fields_in_interp[i] >= 0 && fields_in_interp[i] <= out->interp_size - 8;
    }
    for (size_t i = 0; ok && i < sizeof fields_in_tstate / sizeof fields_in_tstate[0]; i++) {
        ok = fields_in_tstate[i] >= 0 && fields_in_tstate[i] <= out->tstate_size - 8;
    }
    for (size_t i = 0; ok && i < sizeof fields_in_frame / sizeof fields_in_frame[0]; i++) {
        /* (The owner is one byte; the others eight.) */
        int64_t width = fields_in_frame[i] == out->frame_owner ? 1 : 8;
        ok = fields_in_frame[i] >= 0 && fields_in_frame[i] <= out->frame_size - width;
    }
    if (!ok) {
        snprintf(msg, msg_size, "_Py_DebugOffsets of the target are implausible");
        return -1;
    }
    return 0;
}
