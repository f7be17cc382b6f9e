/* The location and exception tables of CPython 3.11 code objects.
 *
 * Formats (CPython's Objects/locations.md and exception_handling_notes.txt):
 * - location table: entries of 1-8 code units; first byte 1cccclll (code c,
 *   length l+1); varints are 6-bit chunks, least significant first, bit 6 set
 *   on all but the last; signed varints keep the sign in bit 0.
 * - exception table: entries (start, size, target, depth << 1 | lasti) in code
 *   units; varints are 6-bit chunks, most significant first, bit 6 set on all
 *   but the last; bit 7 marks the first byte of an entry.
 */

#include "b311.h"

enum {
    LOC_ONE_LINE0 = 10,
    LOC_NO_COLUMNS = 13,
    LOC_LONG = 14,
    LOC_NONE = 15,
};

typedef struct {
    const uint8_t *p, *end;
} reader;

static int
read_byte(reader *r)
{
    if (r->p >= r->end) {
        return -1;
    }
    return *r->p++;
}

static int
read_loc_varint(reader *r, unsigned int *value)
{
    unsigned int shift = 0, result = 0;
    int byte;
    do {
        byte = read_byte(r);
        if (byte < 0 || shift > 28) {
            return -1;
        }
        result |= (unsigned int)(byte & 63) << shift;
        shift += 6;
    } while (byte & 64);
    *value = result;
    return 0;
}

static int
read_loc_svarint(reader *r, int *value)
{
    unsigned int u;
    if (read_loc_varint(r, &u) < 0) {
        return -1;
    }
    *value = (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
    return 0;
}

int
li_decode_locations(PyCodeObject *code, li_loc *locs, int n_units, int *max_line)
{
    reader r = {
        (const uint8_t *)PyBytes_AS_STRING(code->co_linetable),
        (const uint8_t *)PyBytes_AS_STRING(code->co_linetable) +
            PyBytes_GET_SIZE(code->co_linetable),
    };
    int line = code->co_firstlineno, highest = line;
    int unit = 0;
    while (unit < n_units && r.p < r.end) {
        int first = *r.p++;
        if (!(first & 128)) {
            goto corrupt;
        }
        int kind = (first >> 3) & 15;
        int stop = unit + (first & 7) + 1;
        li_loc loc;
        /* Only the kinds that move the line can raise the highest. */
        if (kind < LOC_ONE_LINE0) {
            /* The short forms, most entries: a column on the same line. */
            int second = read_byte(&r);
            if (second < 0) {
                goto corrupt;
            }
            int col = kind << 3 | (second >> 4);
            loc = (li_loc){line, line, col, col + (second & 15)};
        }
        else if (kind == LOC_NONE) {
            loc = (li_loc){-1, -1, -1, -1};
        }
        else {
            unsigned int u1, u2, u3;
            int delta;
            switch (kind) {
            case LOC_LONG:
                if (read_loc_svarint(&r, &delta) < 0 || read_loc_varint(&r, &u1) < 0 ||
                    read_loc_varint(&r, &u2) < 0 || read_loc_varint(&r, &u3) < 0)
                {
                    goto corrupt;
                }
                line += delta;
                loc = (li_loc){line, line + (int)u1, (int)u2 - 1, (int)u3 - 1};
                break;
            case LOC_NO_COLUMNS:
                if (read_loc_svarint(&r, &delta) < 0) {
                    goto corrupt;
                }
                line += delta;
                loc = (li_loc){line, line, -1, -1};
                break;
            default: {    /* LOC_ONE_LINE0 + 0..2 */
                line += kind - LOC_ONE_LINE0;
                int col = read_byte(&r), end_col = read_byte(&r);
                if (col < 0 || end_col < 0) {
                    goto corrupt;
                }
                loc = (li_loc){line, line, col, end_col};
            }
            }
            highest = line > highest ? line : highest;
        }
        if (stop > n_units) {
            stop = n_units;
        }
        /* 1-8 copies, unrolled: a loop here was vectorised for long runs,
           and cost several times the copies in its set-up. */
        li_loc *at = locs + unit;
        switch (stop - unit) {
        case 8: at[7] = loc; /* fall through */
        case 7: at[6] = loc; /* fall through */
        case 6: at[5] = loc; /* fall through */
        case 5: at[4] = loc; /* fall through */
        case 4: at[3] = loc; /* fall through */
        case 3: at[2] = loc; /* fall through */
        case 2: at[1] = loc; /* fall through */
        case 1: at[0] = loc; /* fall through */
        default: break;
        }
        unit = stop;
    }
    /* Units the table does not cover have no location. */
    for (; unit < n_units; unit++) {
        locs[unit] = (li_loc){-1, -1, -1, -1};
    }
    if (max_line != NULL) {
        *max_line = highest;
    }
    return 0;
corrupt:
    PyErr_Format(PyExc_ValueError, "lowimpact: corrupt location table in %R", code);
    return -1;
}

int
li_set_line_array(PyCodeObject *code, const int32_t *lines, int n_units)
{
    assert(code->_co_linearray == NULL && n_units <= Py_SIZE(code));
    bool wide = false;
    for (int u = 0; u < n_units; u++) {
        wide |= lines[u] > INT16_MAX;
    }
    size_t size = wide ? sizeof(int32_t) : sizeof(int16_t);
    void *array = PyMem_Malloc(size * (size_t)Py_SIZE(code));
    if (array == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    code->_co_linearray = array;
    code->_co_linearray_entry_size = (short)size;
    int n = (int)Py_SIZE(code);
    if (wide) {
        int32_t *entries = array;
        for (int u = 0; u < n; u++) {
            entries[u] = u < n_units ? lines[u] : -1;
        }
    }
    else {
        int16_t *entries = array;
        for (int u = 0; u < n; u++) {
            entries[u] = (int16_t)(u < n_units ? lines[u] : -1);
        }
    }
    return 0;
}

int
li_set_line_array_mapped(PyCodeObject *code, const li_loc *locs, const int32_t *map, bool wide)
{
    assert(code->_co_linearray == NULL);
    int n = (int)Py_SIZE(code);
    size_t size = wide ? sizeof(int32_t) : sizeof(int16_t);
    void *array = PyMem_Malloc(size * (size_t)n);
    if (array == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (wide) {
        int32_t *entries = array;
        for (int u = 0; u < n; u++) {
            entries[u] = locs[map[u]].line;
        }
    }
    else {
        int16_t *entries = array;
        for (int u = 0; u < n; u++) {
            entries[u] = (int16_t)locs[map[u]].line;
        }
    }
    code->_co_linearray = array;
    code->_co_linearray_entry_size = (short)size;
    return 0;
}

/* A growable byte buffer.  Errors are sticky and reported by buf_finish. */
typedef struct {
    uint8_t *data;
    Py_ssize_t len, cap;
    bool failed;
} buffer;

static void
buf_put(buffer *b, uint8_t byte)
{
    if (b->failed) {
        return;
    }
    if (b->len == b->cap) {
        Py_ssize_t cap = b->cap ? b->cap * 2 : 64;
        uint8_t *data = PyMem_Realloc(b->data, (size_t)cap);
        if (data == NULL) {
            b->failed = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    b->data[b->len++] = byte;
}

static PyObject *
buf_finish(buffer *b)
{
    PyObject *bytes = NULL;
    if (b->failed) {
        PyErr_NoMemory();
    }
    else {
        bytes = PyBytes_FromStringAndSize((const char *)b->data, b->len);
    }
    PyMem_Free(b->data);
    return bytes;
}

static uint8_t *
put_loc_varint(uint8_t *out, unsigned int value)
{
    while (value >= 64) {
        *out++ = (uint8_t)(64 | (value & 63));
        value >>= 6;
    }
    *out++ = (uint8_t)value;
    return out;
}

static uint8_t *
put_loc_svarint(uint8_t *out, int value)
{
    return put_loc_varint(out, value < 0 ? ((unsigned int)(-value) << 1) | 1
                                         : (unsigned int)value << 1);
}

/* (Four ints, no padding: compared as two 64-bit words.) */
static bool
same_loc(const li_loc *a, const li_loc *b)
{
    return memcmp(a, b, sizeof(li_loc)) == 0;
}

/* The most bytes put_location_entry() writes: a LONG entry, four varints of
 * at most six bytes. */
#define MAX_LOCATION_ENTRY 25

/* Writes one entry covering `length` (1-8) units at `loc`; `line` is the
 * line the deltas are relative to, updated.  Past the entry. */
static uint8_t *
put_location_entry(uint8_t *out, const li_loc *loc, int length, int *line)
{
    uint8_t len_bits = (uint8_t)(length - 1);
    if (loc->line < 0) {
        *out++ = (uint8_t)(128 | LOC_NONE << 3 | len_bits);
        return out;
    }
    int delta = loc->line - *line;
    *line = loc->line;
    bool one_line = loc->end_line == loc->line;
    if (loc->col < 0 && loc->end_col < 0 && one_line) {
        *out++ = (uint8_t)(128 | LOC_NO_COLUMNS << 3 | len_bits);
        return put_loc_svarint(out, delta);
    }
    if (one_line && loc->col >= 0 && loc->end_col >= loc->col) {
        if (delta == 0 && loc->col < 80 && loc->end_col - loc->col < 16) {
            *out++ = (uint8_t)(128 | (loc->col >> 3) << 3 | len_bits);
            *out++ = (uint8_t)((loc->col & 7) << 4 | (loc->end_col - loc->col));
            return out;
        }
        if (delta >= 0 && delta < 3 && loc->col < 256 && loc->end_col < 256) {
            *out++ = (uint8_t)(128 | (LOC_ONE_LINE0 + delta) << 3 | len_bits);
            *out++ = (uint8_t)loc->col;
            *out++ = (uint8_t)loc->end_col;
            return out;
        }
    }
    int end_line = loc->end_line >= loc->line ? loc->end_line : loc->line;
    *out++ = (uint8_t)(128 | LOC_LONG << 3 | len_bits);
    out = put_loc_svarint(out, delta);
    out = put_loc_varint(out, (unsigned int)(end_line - loc->line));
    out = put_loc_varint(out, (unsigned int)(loc->col + 1));
    return put_loc_varint(out, (unsigned int)(loc->end_col + 1));
}

static const li_loc no_location = {-1, -1, -1, -1};

PyObject *
li_encode_locations(const li_loc *locs, const int32_t *loc_of, int n_units, int firstlineno)
{
    /* Written straight into a buffer big enough for an entry per unit:
       growing one byte by byte cost more than the encoding.  Most code fits
       the one on the stack. */
    uint8_t small[4096];
    size_t bound = (size_t)n_units * MAX_LOCATION_ENTRY;
    uint8_t *start = bound <= sizeof(small) ? small : PyMem_Malloc(bound);
    if (start == NULL) {
        return PyErr_NoMemory();
    }
    uint8_t *out = start;
    int line = firstlineno;
    int unit = 0;
    while (unit < n_units) {
        int of = loc_of[unit];
        const li_loc *loc = of >= 0 ? &locs[of] : &no_location;
        int length = 1;
        /* Units that take the same original unit's location are alike;
           others may still be (an instruction's units, a probe that has
           its instruction's location, none and an original unit without
           one). */
        while (length < 8 && unit + length < n_units &&
               (loc_of[unit + length] == of ||
                same_loc(loc, loc_of[unit + length] >= 0 ? &locs[loc_of[unit + length]]
                                                         : &no_location)))
        {
            length++;
        }
        out = put_location_entry(out, loc, length, &line);
        unit += length;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)start, out - start);
    if (start != small) {
        PyMem_Free(start);
    }
    return bytes;
}

static int
read_exc_varint(reader *r, int *value)
{
    int byte = read_byte(r);
    if (byte < 0) {
        return -1;
    }
    int result = byte & 63;
    while (byte & 64) {
        byte = read_byte(r);
        if (byte < 0 || result > (INT_MAX >> 6)) {
            return -1;
        }
        result = (result << 6) | (byte & 63);
    }
    *value = result;
    return 0;
}

int
li_decode_handlers(PyCodeObject *code, li_handler **handlers)
{
    PyObject *table = li_own_exceptiontable(code);
    Py_ssize_t size = PyBytes_GET_SIZE(table);
    if (size == 0) {
        /* Most functions: no allocation as each is armed. */
        *handlers = NULL;
        return 0;
    }
    reader r = {
        (const uint8_t *)PyBytes_AS_STRING(table),
        (const uint8_t *)PyBytes_AS_STRING(table) + size,
    };
    /* Every entry takes at least four bytes. */
    li_handler *out = PyMem_Calloc((size_t)(size / 4 + 1), sizeof(li_handler));
    if (out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int n = 0;
    while (r.p < r.end) {
        int start, length, target, depth_lasti;
        if (read_exc_varint(&r, &start) < 0 || read_exc_varint(&r, &length) < 0 ||
            read_exc_varint(&r, &target) < 0 || read_exc_varint(&r, &depth_lasti) < 0 ||
            n >= size / 4 + 1)
        {
            PyMem_Free(out);
            PyErr_Format(PyExc_ValueError,
                         "lowimpact: corrupt exception table in %R", code);
            return -1;
        }
        out[n++] = (li_handler){start, start + length, target, depth_lasti >> 1,
                                (depth_lasti & 1) != 0};
    }
    *handlers = out;
    return n;
}

static void
put_exc_varint(buffer *b, unsigned int value, bool entry_start)
{
    int chunks = 1;
    while ((value >> (6 * chunks)) != 0 && chunks < 6) {
        chunks++;
    }
    for (int i = chunks - 1; i >= 0; i--) {
        uint8_t byte = (uint8_t)((value >> (6 * i)) & 63);
        if (i > 0) {
            byte |= 64;
        }
        if (entry_start) {
            byte |= 128;
            entry_start = false;
        }
        buf_put(b, byte);
    }
}

PyObject *
li_encode_handlers(const li_handler *per_unit, int n_units)
{
    buffer b = {0};
    for (int start = 0; start < n_units;) {
        const li_handler *h = &per_unit[start];
        int end = start + 1;
        while (end < n_units && per_unit[end].target == h->target &&
               per_unit[end].depth == h->depth && per_unit[end].lasti == h->lasti)
        {
            end++;
        }
        if (h->target >= 0) {
            put_exc_varint(&b, (unsigned int)start, true);
            put_exc_varint(&b, (unsigned int)(end - start), false);
            put_exc_varint(&b, (unsigned int)h->target, false);
            put_exc_varint(&b, (unsigned int)(h->depth << 1 | (h->lasti ? 1 : 0)), false);
        }
        start = end;
    }
    return buf_finish(&b);
}
