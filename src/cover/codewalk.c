/* _cover.walk_code: arcs.py's walk_in_python in C (see codewalk.h).
 *
 * Saving --branch data walks every measured code object once; in Python
 * that walk was most of the save (an object or two per instruction).  This
 * gives the same objects, built once each: tests/cover/test_arcs.py compares
 * the two over every code object of a sample of the standard library.
 *
 * Lines are Optional[int] in Python; here a statement line is a long long,
 * NO_LINE where it is None.  Where the Python walk's answer depends on more
 * than a compiler ever puts in a code object (odd offsets in the line table,
 * a run of EXTENDED_ARG longer than an argument needs), the walk gives None
 * and the caller uses the Python one. */
#include "codewalk.h"

#include <limits.h>

#include "li_backport.h"

/* The values of arcs.py's _Format tables that the walk tells apart. */
enum { KIND_PLAIN = 0, KIND_UNCONDITIONAL = 1, KIND_BRANCH = 4 };
enum { JUMP_NONE = 0, JUMP_ABSOLUTE = 1, JUMP_FORWARD = 2 };

#define NO_LINE LLONG_MIN

/* Beyond this an accumulated EXTENDED_ARG would soon not fit a long long
 * where Python's int goes on: leave such code to the Python walk. */
#define ARG_BOUND (1LL << 40)

typedef struct {
    const unsigned char *kind;
    const unsigned char *caches;
    const unsigned char *has_arg;
    const unsigned char *jump;
    const unsigned char *is_extended_arg;
    long long int_overflow;
    int jump_bytes;
    int setup_finally;          /* its opcode byte, or -1 where none */
} Format;

/* What the walk builds; every PyObject * is owned. */
typedef struct {
    Py_ssize_t size;             /* of the bytecode, in bytes */
    Py_ssize_t units;
    PyObject *unit_line;         /* list: the line of each code unit, or None */
    PyObject *unit_statement;    /* list: its statement's first line, or None */
    long long *statement_of;     /* the same as numbers (NO_LINE) */
    PyObject *starts;            /* set of line starts, or None (any entry reports) */
    unsigned char *is_start;     /* the same per unit, or NULL */
    PyObject *ops, *targets, *branches, *candidates, *pending, *trails;
} Walk;

static void
walk_clear(Walk *w)
{
    Py_CLEAR(w->unit_line);
    Py_CLEAR(w->unit_statement);
    Py_CLEAR(w->starts);
    Py_CLEAR(w->ops);
    Py_CLEAR(w->targets);
    Py_CLEAR(w->branches);
    Py_CLEAR(w->candidates);
    Py_CLEAR(w->pending);
    Py_CLEAR(w->trails);
    PyMem_Free(w->statement_of);
    w->statement_of = NULL;
    PyMem_Free(w->is_start);
    w->is_start = NULL;
}

static PyObject *
list_of_none(Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyList_SET_ITEM(list, i, Py_NewRef(Py_None));
    }
    return list;
}

static void
list_fill(PyObject *list, Py_ssize_t from, Py_ssize_t to, PyObject *item)
{
    for (Py_ssize_t i = from; i < to; i++) {
        PyObject *old = PyList_GET_ITEM(list, i);
        PyList_SET_ITEM(list, i, Py_NewRef(item));
        Py_DECREF(old);     /* None or an int: no code runs */
    }
}

/* The first line of *line*'s statement, from *statements* (line -> first
 * line) or first_line(line), which it then keeps.  A new reference, NULL on
 * error. */
static PyObject *
statement_of_line(PyObject *statements, PyObject *first_line, PyObject *line)
{
    PyObject *statement = PyDict_GetItemWithError(statements, line);
    if (statement != NULL) {
        return Py_NewRef(statement);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    statement = PyObject_CallOneArg(first_line, line);
    if (statement == NULL) {
        return NULL;
    }
    if (PyDict_SetItem(statements, line, statement) < 0) {
        Py_DECREF(statement);
        return NULL;
    }
    return statement;
}

/* The lines of the code units from co_lines()'s ranges.  1 when done, 0
 * where the Python walk must do it (see the top), -1 on error. */
static int
read_lines(Walk *w, PyObject *lines, PyObject *first_line)
{
    PyObject *iterator = NULL, *item = NULL, *statements = NULL, *statement = NULL;
    PyObject *previous_line = Py_NewRef(Py_None);    /* owned */
    int result = -1;

    statements = PyDict_New();
    iterator = PyObject_GetIter(lines);
    if (statements == NULL || iterator == NULL) {
        goto done;
    }
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "walk_code: lines must give (start, end, line)");
            goto done;
        }
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
        if (start == -1 && PyErr_Occurred()) {
            goto done;
        }
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
        if (end == -1 && PyErr_Occurred()) {
            goto done;
        }
        PyObject *line = PyTuple_GET_ITEM(item, 2);     /* borrowed from item */
        if (end > start) {
            if (start < 0 || end > w->size || (start | end) & 1) {
                result = 0;
                goto done;
            }
            if (w->starts != Py_None) {
                int differs = PyObject_RichCompareBool(line, previous_line, Py_NE);
                if (differs < 0) {
                    goto done;
                }
                if (differs) {
                    if (PySet_Add(w->starts, PyTuple_GET_ITEM(item, 0)) < 0) {
                        goto done;
                    }
                    w->is_start[start / 2] = 1;
                }
                Py_SETREF(previous_line, Py_NewRef(line));
            }
            if (line != Py_None) {
                statement = statement_of_line(statements, first_line, line);
                if (statement == NULL) {
                    goto done;
                }
                int overflow = 0;
                long long value = PyLong_Check(statement)
                    ? PyLong_AsLongLongAndOverflow(statement, &overflow) : NO_LINE;
                if (value == -1 && PyErr_Occurred()) {
                    goto done;
                }
                if (overflow || value == NO_LINE) {
                    /* Not a line number: the Python walk keeps it as it is. */
                    result = 0;
                    goto done;
                }
                list_fill(w->unit_line, start / 2, end / 2, line);
                list_fill(w->unit_statement, start / 2, end / 2, statement);
                for (Py_ssize_t unit = start / 2; unit < end / 2; unit++) {
                    w->statement_of[unit] = value;
                }
                Py_CLEAR(statement);
            }
        }
        Py_CLEAR(item);
    }
    result = PyErr_Occurred() ? -1 : 1;
done:
    Py_XDECREF(statement);
    Py_XDECREF(item);
    Py_XDECREF(iterator);
    Py_XDECREF(statements);
    Py_DECREF(previous_line);
    return result;
}

/* list.append((a, b, ...)) of a new tuple; the items are borrowed. */
static int
append_pair(PyObject *list, PyObject *a, PyObject *b)
{
    PyObject *pair = PyTuple_Pack(2, a, b);
    if (pair == NULL) {
        return -1;
    }
    int result = PyList_Append(list, pair);
    Py_DECREF(pair);
    return result;
}

static int
append_trail(PyObject *trails, PyObject *into, PyObject *line, PyObject *destination,
             PyObject *handler)
{
    PyObject *trail = PyTuple_Pack(4, into, line, destination, handler);
    if (trail == NULL) {
        return -1;
    }
    int result = PyList_Append(trails, trail);
    Py_DECREF(trail);
    return result;
}

/* The pass over the instructions (walk_in_python's second loop).  1 when
 * done, 0 where the Python walk must do it, -1 on error. */
static int
read_instructions(Walk *w, const unsigned char *code, const Format *f, int line_starts)
{
    PyObject *seen = PySet_New(NULL);
    PyObject *offset_obj = NULL, *target_obj = NULL, *value = NULL;   /* owned */
    PyObject *into = w->candidates;     /* borrowed: candidates or the last of pending */
    PyObject *previous_obj = Py_NewRef(Py_None);                      /* owned */
    long long run_line = -1;            /* no line's (as in Python: -1) */
    int skipping = 1;
    long long accumulated = 0;
    int setup_finally = line_starts ? f->setup_finally : -1;
    int result = -1;

    if (seen == NULL) {
        goto done;
    }
    for (Py_ssize_t offset = 0; offset < w->size;) {
        int op = code[offset];
        int has_arg = f->has_arg[op];
        long long arg = 0;
        if (has_arg) {
            arg = code[offset + 1] | accumulated;
            accumulated = 0;
            if (f->is_extended_arg[op]) {
                if (arg >= ARG_BOUND || arg <= -ARG_BOUND) {
                    result = 0;
                    goto done;
                }
                accumulated = arg * 256;
                if (accumulated >= f->int_overflow) {
                    accumulated -= 2 * f->int_overflow;
                }
            }
        }
        else {
            accumulated = 0;
        }
        Py_ssize_t following = offset + 2 + 2 * (Py_ssize_t)f->caches[op];
        offset_obj = PyLong_FromSsize_t(offset);
        if (offset_obj == NULL) {
            goto done;
        }
        value = PyLong_FromLong(op);
        if (value == NULL || PyDict_SetItem(w->ops, offset_obj, value) < 0) {
            goto done;
        }
        Py_CLEAR(value);
        int has_target = 0;
        long long target = 0;
        int how = f->jump[op];
        if (how != JUMP_NONE && has_arg) {
            long long distance = arg * f->jump_bytes;
            target = how == JUMP_ABSOLUTE ? distance
                : (long long)following + (how == JUMP_FORWARD ? distance : -distance);
            has_target = 1;
            target_obj = PyLong_FromLongLong(target);
            if (target_obj == NULL || PyDict_SetItem(w->targets, offset_obj, target_obj) < 0) {
                goto done;
            }
        }
        int kind = f->kind[op];
        if (kind == KIND_BRANCH && append_pair(w->branches, offset_obj, previous_obj) < 0) {
            goto done;
        }
        long long line = w->statement_of[offset / 2];
        PyObject *line_obj = PyList_GET_ITEM(w->unit_statement, offset / 2);   /* borrowed */
        if (line != run_line) {
            run_line = line;
            int contains = PySet_Contains(seen, line_obj);
            if (contains < 0) {
                goto done;
            }
            if (contains) {
                PyObject *arcs = PyList_New(0);
                if (arcs == NULL) {
                    goto done;
                }
                int appended = append_pair(w->pending, offset_obj, arcs);
                Py_DECREF(arcs);        /* pending keeps it */
                if (appended < 0) {
                    goto done;
                }
                into = arcs;
            }
            else {
                into = w->candidates;
            }
            if (PySet_Add(seen, line_obj) < 0) {
                goto done;
            }
            skipping = line == NO_LINE;
        }
        if (op == setup_finally && line != NO_LINE
            && append_trail(w->trails, into, line_obj, has_target ? target_obj : Py_None,
                            Py_True) < 0) {
            goto done;
        }
        if (!skipping) {
            int has_destination = 0;
            long long destination = 0;
            if (kind == KIND_BRANCH) {
                /* What follows a conditional jump in the statement's run may
                 * never have run: the BRANCH events tell what did. */
                skipping = 1;
            }
            else if (kind == KIND_UNCONDITIONAL) {
                has_destination = has_target;
                destination = target;
            }
            else if (kind == KIND_PLAIN && following < w->size) {
                has_destination = 1;
                destination = following;
            }
            if (has_destination && destination >= 0 && destination / 2 < w->units) {
                long long next_line = w->statement_of[destination / 2];
                if (next_line != NO_LINE && next_line != line) {
                    PyObject *next_obj = PyList_GET_ITEM(w->unit_statement, destination / 2);
                    if (!line_starts || destination < offset
                        || (destination % 2 == 0 && w->is_start[destination / 2])) {
                        if (append_pair(into, line_obj, next_obj) < 0) {
                            goto done;
                        }
                    }
                    else {
                        value = PyLong_FromLongLong(destination);
                        if (value == NULL
                            || append_trail(w->trails, into, line_obj, value, Py_False) < 0) {
                            goto done;
                        }
                        Py_CLEAR(value);
                    }
                }
            }
        }
        Py_CLEAR(target_obj);
        Py_SETREF(previous_obj, offset_obj);
        offset_obj = NULL;
        offset = following;
    }
    result = 1;
done:
    Py_XDECREF(value);
    Py_XDECREF(target_obj);
    Py_XDECREF(offset_obj);
    Py_DECREF(previous_obj);
    Py_XDECREF(seen);
    return result;
}

/* A 256-byte table of the tuple given, or NULL with an exception set. */
static const unsigned char *
table_of(PyObject *tables, Py_ssize_t i)
{
    PyObject *table = PyTuple_GET_ITEM(tables, i);
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256) {
        PyErr_SetString(PyExc_TypeError, "walk_code: the opcode tables are 256 bytes each");
        return NULL;
    }
    return (const unsigned char *)PyBytes_AS_STRING(table);
}

static int
read_format(PyObject *tables, Format *f)
{
    if (!PyTuple_Check(tables) || PyTuple_GET_SIZE(tables) != 8) {
        PyErr_SetString(PyExc_TypeError, "walk_code: tables must be _Format.tables");
        return -1;
    }
    if ((f->kind = table_of(tables, 0)) == NULL || (f->caches = table_of(tables, 1)) == NULL
        || (f->has_arg = table_of(tables, 2)) == NULL || (f->jump = table_of(tables, 3)) == NULL
        || (f->is_extended_arg = table_of(tables, 4)) == NULL) {
        return -1;
    }
    f->int_overflow = PyLong_AsLongLong(PyTuple_GET_ITEM(tables, 5));
    if (f->int_overflow == -1 && PyErr_Occurred()) {
        return -1;
    }
    long jump_bytes = PyLong_AsLong(PyTuple_GET_ITEM(tables, 6));
    if (jump_bytes == -1 && PyErr_Occurred()) {
        return -1;
    }
    long setup_finally = PyLong_AsLong(PyTuple_GET_ITEM(tables, 7));
    if (setup_finally == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (f->int_overflow <= 0 || f->int_overflow > ARG_BOUND || jump_bytes < 1 || jump_bytes > 2) {
        PyErr_SetString(PyExc_ValueError, "walk_code: tables out of range");
        return -1;
    }
    f->jump_bytes = (int)jump_bytes;
    /* (3.12+ numbers its pseudo-instruction SETUP_FINALLY past the bytes.) */
    f->setup_finally = setup_finally >= 0 && setup_finally < 256 ? (int)setup_finally : -1;
    return 0;
}

const char cover_walk_code_doc[] =
"walk_code(raw, lines, first_line, line_starts, tables)\n\n"
"lowimpact.tools.cover.arcs.walk_in_python(raw, lines, first_line, line_starts)\n"
"in C, with the opcode tables of arcs._Format (its .tables): the same tuple,\n"
"or None for bytecode no compiler makes, which it leaves to the Python walk.";

PyObject *
cover_walk_code(PyObject *module, PyObject *args)
{
    PyObject *raw, *lines, *first_line, *tables;     /* borrowed */
    int line_starts, done;
    Format format;
    Walk w = {0};
    PyObject *result;
    (void)module;

    if (!PyArg_ParseTuple(args, "O!OOpO:walk_code", &PyBytes_Type, &raw, &lines, &first_line,
                          &line_starts, &tables)) {
        return NULL;
    }
    if (read_format(tables, &format) < 0) {
        return NULL;
    }
    w.size = PyBytes_GET_SIZE(raw);
    if (w.size & 1) {
        Py_RETURN_NONE;
    }
    w.units = w.size / 2;
    w.unit_line = list_of_none(w.units);
    w.unit_statement = list_of_none(w.units);
    w.statement_of = PyMem_Malloc(sizeof(long long) * (size_t)(w.units ? w.units : 1));
    w.starts = line_starts ? PySet_New(NULL) : Py_NewRef(Py_None);
    w.is_start = line_starts ? PyMem_Calloc((size_t)(w.units ? w.units : 1), 1) : NULL;
    w.ops = PyDict_New();
    w.targets = PyDict_New();
    w.branches = PyList_New(0);
    w.candidates = PyList_New(0);
    w.pending = PyList_New(0);
    w.trails = PyList_New(0);
    if (w.unit_line == NULL || w.unit_statement == NULL || w.starts == NULL || w.ops == NULL
        || w.targets == NULL || w.branches == NULL || w.candidates == NULL
        || w.pending == NULL || w.trails == NULL) {
        goto error;
    }
    if (w.statement_of == NULL || (line_starts && w.is_start == NULL)) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t unit = 0; unit < w.units; unit++) {
        w.statement_of[unit] = NO_LINE;
    }
    done = read_lines(&w, lines, first_line);
    if (done > 0) {
        done = read_instructions(&w, (const unsigned char *)PyBytes_AS_STRING(raw), &format,
                                 line_starts);
    }
    if (done < 0) {
        goto error;
    }
    if (done == 0) {
        walk_clear(&w);
        Py_RETURN_NONE;
    }
    result = PyTuple_Pack(9, w.unit_line, w.unit_statement, w.starts, w.ops,
                                    w.targets, w.branches, w.candidates, w.pending, w.trails);
    walk_clear(&w);
    return result;
error:
    walk_clear(&w);
    return NULL;
}
