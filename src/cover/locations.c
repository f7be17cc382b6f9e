/* _cover.code_locations: see locations.h.
 *
 * The table is a sequence of entries, each for 1 to 8 code units: a first
 * byte with its top bit set, holding a 4-bit kind and the number of units
 * less one, then the kind's bytes.  Lines are deltas from the line before
 * (co_firstlineno first); "varints" are 6 bits a byte, least significant
 * first, bit 6 meaning more, and a signed one keeps its sign in bit 0. */
#include "locations.h"

#include "li_backport.h"

enum {
    KIND_NONE = 15,         /* no location */
    KIND_LONG = 14,         /* line delta, end line delta, col + 1, end col + 1 (varints) */
    KIND_NO_COLUMNS = 13,   /* line delta */
    KIND_ONE_LINE = 10,     /* 10-12: a line delta of 0-2, col and end col in a byte each */
};

/* (line, end line, col, end col) of a unit, -1 where there is none.  Sums
 * wrap round as unsigned (a table no compiler made may overflow). */
typedef struct {
    int line, end_line, col, end_col;
} Location;

typedef struct {
    const unsigned char *next, *end;
} Reader;

static inline int
add(int a, int b)
{
    return (int)((unsigned int)a + (unsigned int)b);
}

/* 0 on success, -1 (no exception set) when the table ends first. */
static int
read_byte(Reader *r, int *value)
{
    if (r->next >= r->end) {
        return -1;
    }
    *value = *r->next++;
    return 0;
}

static int
read_varint(Reader *r, int *value)
{
    int byte, shift = 0;
    unsigned int result = 0;
    do {
        if (read_byte(r, &byte) < 0 || shift > 30) {
            return -1;
        }
        result |= (unsigned int)(byte & 63) << shift;
        shift += 6;
    } while (byte & 64);
    *value = (int)result;
    return 0;
}

static int
read_signed_varint(Reader *r, int *value)
{
    int raw;
    if (read_varint(r, &raw) < 0) {
        return -1;
    }
    unsigned int magnitude = (unsigned int)raw >> 1;
    *value = raw & 1 ? -(int)magnitude : (int)magnitude;
    return 0;
}

/* The location of the next entry and how many units it covers; 0 at the
 * table's end, -1 (no exception set) on a table cut short. */
static int
read_entry(Reader *r, int *line, Location *where)
{
    int first, delta, byte;
    if (r->next >= r->end) {
        return 0;
    }
    if (read_byte(r, &first) < 0 || !(first & 128)) {
        return -1;
    }
    int kind = (first >> 3) & 15;
    int units = (first & 7) + 1;
    switch (kind) {
    case KIND_NONE:
        *where = (Location){-1, -1, -1, -1};
        break;
    case KIND_LONG:
        if (read_signed_varint(r, &delta) < 0) {
            return -1;
        }
        *line = add(*line, delta);
        where->line = *line;
        if (read_varint(r, &delta) < 0 || read_varint(r, &where->col) < 0
            || read_varint(r, &where->end_col) < 0) {
            return -1;
        }
        where->end_line = add(*line, delta);
        where->col = add(where->col, -1);
        where->end_col = add(where->end_col, -1);
        break;
    case KIND_NO_COLUMNS:
        if (read_signed_varint(r, &delta) < 0) {
            return -1;
        }
        *line = add(*line, delta);
        *where = (Location){*line, *line, -1, -1};
        break;
    case KIND_ONE_LINE:
    case KIND_ONE_LINE + 1:
    case KIND_ONE_LINE + 2:
        *line = add(*line, kind - KIND_ONE_LINE);
        where->line = where->end_line = *line;
        if (read_byte(r, &where->col) < 0 || read_byte(r, &where->end_col) < 0) {
            return -1;
        }
        break;
    default:
        /* The short forms (0-9): the line before, col and its length in
         * the kind and one byte. */
        if (read_byte(r, &byte) < 0) {
            return -1;
        }
        where->line = where->end_line = *line;
        where->col = kind << 3 | byte >> 4;
        where->end_col = where->col + (byte & 15);
        break;
    }
    return units;
}

/* An int, or None for -1 (as co_positions() gives them). */
static PyObject *
int_or_none(int value)
{
    return value == -1 ? Py_NewRef(Py_None) : PyLong_FromLong(value);
}

static PyObject *
location_tuple(const Location *where)
{
    PyObject *items[4] = {int_or_none(where->line), int_or_none(where->end_line),
                          int_or_none(where->col), int_or_none(where->end_col)};
    PyObject *tuple = NULL;
    if (items[0] != NULL && items[1] != NULL && items[2] != NULL && items[3] != NULL) {
        tuple = PyTuple_Pack(4, items[0], items[1], items[2], items[3]);
    }
    for (int i = 0; i < 4; i++) {
        Py_XDECREF(items[i]);
    }
    return tuple;
}

const char cover_code_locations_doc[] =
"code_locations(linetable, firstlineno, units)\n\n"
"[list(code.co_positions())[unit] for unit in units] of a CPython 3.11+ code\n"
"object's co_linetable and co_firstlineno, reading the table only as far as\n"
"the last unit asked for; IndexError for a unit the table does not reach.";

PyObject *
cover_code_locations(PyObject *module, PyObject *args)
{
    PyObject *linetable, *units;                    /* borrowed */
    PyObject *sequence = NULL, *result = NULL;      /* owned */
    int line;
    Location *found = NULL;
    Reader reader;
    Py_ssize_t n, last = -1, read = 0;
    (void)module;

    if (!PyArg_ParseTuple(args, "O!iO:code_locations", &PyBytes_Type, &linetable, &line,
                          &units)) {
        return NULL;
    }
    sequence = PySequence_Fast(units, "code_locations: units must be a sequence");
    if (sequence == NULL) {
        return NULL;
    }
    n = PySequence_Fast_GET_SIZE(sequence);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t unit = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sequence, i));
        if (unit == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (unit < 0) {
            PyErr_SetString(PyExc_IndexError, "code_locations: a negative unit");
            goto error;
        }
        last = unit > last ? unit : last;
    }
    found = PyMem_New(Location, (size_t)(last + 1 > 0 ? last + 1 : 1));
    if (found == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    reader.next = (const unsigned char *)PyBytes_AS_STRING(linetable);
    reader.end = reader.next + PyBytes_GET_SIZE(linetable);
    while (read <= last) {
        Location where;
        int covered = read_entry(&reader, &line, &where);
        if (covered < 0) {
            PyErr_SetString(PyExc_ValueError, "code_locations: a location table cut short");
            goto error;
        }
        if (covered == 0) {
            break;
        }
        for (int i = 0; i < covered && read <= last; i++) {
            found[read++] = where;
        }
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t unit = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sequence, i));
        if (unit >= read) {
            PyErr_SetString(PyExc_IndexError, "code_locations: a unit past the table's end");
            goto error;
        }
        PyObject *tuple = location_tuple(&found[unit]);
        if (tuple == NULL) {
            goto error;
        }
        PyList_SET_ITEM(result, i, tuple);
    }
    PyMem_Free(found);
    Py_DECREF(sequence);
    return result;
error:
    PyMem_Free(found);
    Py_XDECREF(result);
    Py_DECREF(sequence);
    return NULL;
}

typedef struct {
    int line;
    int32_t unit;
} LineUnit;

static int
by_line_then_unit(const void *a, const void *b)
{
    const LineUnit *x = a, *y = b;
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    return (x->unit > y->unit) - (x->unit < y->unit);
}

/* by_line[line] = the units of pairs[0:count] (all of `line`), if more
 * than one. */
static int
add_line_units(PyObject *by_line, const LineUnit *pairs, Py_ssize_t count, int32_t *scratch)
{
    if (count < 2 || pairs[0].line < 0) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        scratch[i] = pairs[i].unit;
    }
    PyObject *key = PyLong_FromLong(pairs[0].line);   /* owned */
    PyObject *value = PyBytes_FromStringAndSize((const char *)scratch,
                                                count * (Py_ssize_t)sizeof(int32_t));   /* owned */
    int rc = key == NULL || value == NULL ? -1 : PyDict_SetItem(by_line, key, value);
    Py_XDECREF(key);
    Py_XDECREF(value);
    return rc;
}

PyObject *
cover_units_by_line(PyObject *linetable, int firstlineno, const int32_t *units, Py_ssize_t n)
{
    PyObject *by_line = PyDict_New();   /* owned */
    LineUnit *pairs = PyMem_New(LineUnit, (size_t)(n > 0 ? n : 1));
    int32_t *scratch = PyMem_New(int32_t, (size_t)(n > 0 ? n : 1));
    if (by_line == NULL || pairs == NULL || scratch == NULL) {
        if (by_line != NULL) {
            PyErr_NoMemory();
        }
        goto error;
    }
    Reader reader = {(const unsigned char *)PyBytes_AS_STRING(linetable),
                     (const unsigned char *)PyBytes_AS_STRING(linetable) +
                         PyBytes_GET_SIZE(linetable)};
    /* The line of each unit, the table read once. */
    int line = firstlineno;
    Py_ssize_t next = 0;
    int64_t end = 0;   /* the first unit past the entries read */
    while (next < n) {
        Location where;
        int covered = read_entry(&reader, &line, &where);
        if (covered <= 0) {
            PyErr_SetString(PyExc_ValueError, "a location table cut short");
            goto error;
        }
        end += covered;
        for (; next < n && units[next] < end; next++) {
            pairs[next] = (LineUnit){where.line, units[next]};
        }
    }
    qsort(pairs, (size_t)n, sizeof(LineUnit), by_line_then_unit);
    for (Py_ssize_t first = 0, i = 1; i <= n; i++) {
        if (i == n || pairs[i].line != pairs[first].line) {
            if (add_line_units(by_line, pairs + first, i - first, scratch) < 0) {
                goto error;
            }
            first = i;
        }
    }
    PyMem_Free(pairs);
    PyMem_Free(scratch);
    return by_line;
error:
    PyMem_Free(pairs);
    PyMem_Free(scratch);
    Py_XDECREF(by_line);
    return NULL;
}
