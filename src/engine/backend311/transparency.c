/* Users keep seeing original code objects and offsets.
 *
 * Frames run shadows, and functions point at them, but every Python-level
 * way to reach a code object or an offset from a function, frame, generator
 * or traceback maps it back to the original: the attribute descriptors of
 * those types are replaced by ones that call the interpreter's own getter and
 * translate its result.  C code (PyFrame_GetCode, out-of-process readers)
 * still sees the shadow, which carries the original's names, lines and
 * columns.
 */

#include "b311.h"
#include "structmember.h"

int
li_original_unit(PyCodeObject *code, int unit)
{
    li_probes *lp = li_shadow_probes(code);
    if (lp == NULL || unit < 0 || unit >= lp->n_units) {
        return unit;
    }
    return li_orig_of(lp, unit);
}

static PyObject *
original_of(PyObject *code)
{
    if (code != NULL && PyCode_Check(code)) {
        PyObject *original = (PyObject *)li_backend_original((PyCodeObject *)code);
        if (original != code) {
            Py_SETREF(code, Py_NewRef(original));
        }
    }
    return code;
}

/* ---- getters that return a code object ---------------------------------- */

/* The descriptor replaced, per patched attribute. */
typedef struct {
    PyTypeObject *type;
    const char *name;
    PyObject *descr;        /* owned: the interpreter's descriptor */
    PyObject *doc;          /* owned: its docstring, which ours shares */
} patched_attr;

static PyObject *
mapped_code_get(PyObject *self, void *closure)
{
    patched_attr *attr = (patched_attr *)closure;
    PyObject *code = Py_TYPE(attr->descr)->tp_descr_get(attr->descr, self,
                                                       (PyObject *)Py_TYPE(self));
    return original_of(code);
}

/* function.__code__ = code: new calls run the code they should. */
static int
function_code_set(PyObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    PyFunctionObject *func = (PyFunctionObject *)self;
    if (value == NULL || !PyCode_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "__code__ must be set to a code object");
        return -1;
    }
    if (PySys_Audit("object.__setattr__", "OsO", self, "__code__", value) < 0) {
        return -1;
    }
    PyCodeObject *code = li_backend_original((PyCodeObject *)value);
    Py_ssize_t nfree = code->co_nfreevars;
    Py_ssize_t nclosure = func->func_closure ? PyTuple_GET_SIZE(func->func_closure) : 0;
    if (nclosure != nfree) {
        PyErr_Format(PyExc_ValueError,
                     "%U() requires a code object with %zd free vars, not %zd",
                     func->func_name, nclosure, nfree);
        return -1;
    }
    PyObject *desired = li_prepared_code(code, func->func_builtins);
    if (desired == NULL) {
        return -1;
    }
    Py_SETREF(func->func_code, desired);
    func->func_version = 0;
    return 0;
}

/* Setting an attribute whose getter was replaced: the interpreter's own. */
static int
original_set(PyObject *self, PyObject *value, void *closure)
{
    patched_attr *attr = (patched_attr *)closure;
    return Py_TYPE(attr->descr)->tp_descr_set(attr->descr, self, value);
}

static int
frame_lineno_set(PyObject *self, PyObject *value, void *closure)
{
    int done = li_jump_set_lineno((PyFrameObject *)self, value, original_set, closure);
    return done == 1 ? original_set(self, value, closure) : done;
}

/* ---- getters of offsets and lines ---------------------------------------- */

/* The line of shadow unit `unit` as the original has it (-1 for none).  The
 * shadow's own line array hides the lines of a few probe units from tracing
 * (shadow.c), which Python code must not see. */
static int
original_line(PyCodeObject *code, int unit)
{
    li_probes *lp = li_shadow_probes(code);
    if (lp == NULL) {
        return unit < 0 ? code->co_firstlineno
                        : PyCode_Addr2Line(code, unit * (int)sizeof(_Py_CODEUNIT));
    }
    if (unit < 0) {
        return lp->original->co_firstlineno;
    }
    return PyCode_Addr2Line(lp->original,
                            li_original_unit(code, unit) * (int)sizeof(_Py_CODEUNIT));
}

static PyObject *
line_or_none(int line)
{
    if (line < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(line);
}

static PyObject *
frame_lineno_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyFrameObject *frame = (PyFrameObject *)self;
    if (frame->f_lineno != 0) {
        return PyLong_FromLong(frame->f_lineno);   /* set while tracing */
    }
    int jump = li_jump_pending_unit(frame->f_frame);
    if (jump >= 0) {
        PyCodeObject *original = li_backend_original(frame->f_frame->f_code);
        return line_or_none(PyCode_Addr2Line(original, jump * (int)sizeof(_Py_CODEUNIT)));
    }
    PyCodeObject *code = PyFrame_GetCode(frame);
    int lasti = PyFrame_GetLasti(frame);
    int line = original_line(code, lasti < 0 ? -1 : lasti / (int)sizeof(_Py_CODEUNIT));
    Py_DECREF(code);
    return line_or_none(line);
}

static PyObject *
traceback_lineno_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyTracebackObject *tb = (PyTracebackObject *)self;
    if (tb->tb_lineno != -1 || tb->tb_frame == NULL) {
        return line_or_none(tb->tb_lineno);
    }
    PyCodeObject *code = PyFrame_GetCode(tb->tb_frame);
    int line = original_line(code, tb->tb_lasti / (int)sizeof(_Py_CODEUNIT));
    Py_DECREF(code);
    return line_or_none(line);
}


static PyObject *
frame_lasti_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyFrameObject *frame = (PyFrameObject *)self;
    int jump = li_jump_pending_unit(frame->f_frame);
    if (jump >= 0) {
        return PyLong_FromLong((long)jump * (long)sizeof(_Py_CODEUNIT));
    }
    int lasti = PyFrame_GetLasti(frame);
    if (lasti < 0) {
        return PyLong_FromLong(-1);
    }
    PyCodeObject *code = PyFrame_GetCode(frame);
    int unit = li_original_unit(code, lasti / (int)sizeof(_Py_CODEUNIT));
    Py_DECREF(code);
    return PyLong_FromLong((long)unit * (long)sizeof(_Py_CODEUNIT));
}

static PyObject *
traceback_lasti_get(PyObject *self, void *Py_UNUSED(closure))
{
    PyTracebackObject *tb = (PyTracebackObject *)self;
    int lasti = tb->tb_lasti;
    /* The interpreter leaves tb_lineno to be worked out from tb_lasti; a
       traceback made by Python code has both as given. */
    if (lasti >= 0 && tb->tb_frame != NULL && tb->tb_lineno == -1) {
        PyCodeObject *code = PyFrame_GetCode(tb->tb_frame);
        lasti = li_original_unit(code, lasti / (int)sizeof(_Py_CODEUNIT)) *
                (int)sizeof(_Py_CODEUNIT);
        Py_DECREF(code);
    }
    return PyLong_FromLong(lasti);
}

/* An armed entry trampoline raises the stack size of its code, for the
 * frames that will land on a shadow (trampoline.c). */
static PyObject *
code_stacksize_get(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(li_true_stacksize((PyCodeObject *)self));
}

/* An armed exception trampoline routes exceptions through a table of its
 * own (trampoline.c). */
static PyObject *
code_exceptiontable_get(PyObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(li_own_exceptiontable((PyCodeObject *)self));
}

static patched_attr patches[] = {
    {&PyCode_Type, "co_stacksize", NULL, NULL},
    {&PyCode_Type, "co_exceptiontable", NULL, NULL},
    {&PyFunction_Type, "__code__", NULL, NULL},
    {&PyFrame_Type, "f_code", NULL, NULL},
    {&PyFrame_Type, "f_lasti", NULL, NULL},
    {&PyFrame_Type, "f_lineno", NULL, NULL},
    {&PyGen_Type, "gi_code", NULL, NULL},
    {&PyCoro_Type, "cr_code", NULL, NULL},
    {&PyAsyncGen_Type, "ag_code", NULL, NULL},
    {&PyTraceBack_Type, "tb_lasti", NULL, NULL},
    {&PyTraceBack_Type, "tb_lineno", NULL, NULL},
};

#define N_PATCHES (sizeof(patches) / sizeof(patches[0]))

static PyGetSetDef patch_defs[N_PATCHES];

static int
install(size_t i, getter get, setter set)
{
    patched_attr *attr = &patches[i];
    PyObject *dict = attr->type->tp_dict;
    PyObject *descr = PyDict_GetItemString(dict, attr->name);
    if (descr == NULL) {
        PyErr_Format(PyExc_RuntimeError, "lowimpact: %s.%s not found",
                     attr->type->tp_name, attr->name);
        return -1;
    }
    PyObject *doc = PyObject_GetAttrString(descr, "__doc__");
    if (doc == NULL) {
        return -1;
    }
    attr->doc = doc;    /* kept for good: the descriptor points into it */
    const char *doc_text = PyUnicode_Check(doc) ? PyUnicode_AsUTF8(doc) : NULL;
    if (doc_text == NULL && PyErr_Occurred()) {
        return -1;
    }
    patch_defs[i] = (PyGetSetDef){(char *)attr->name, get, set, doc_text, attr};
    PyObject *replacement = PyDescr_NewGetSet(attr->type, &patch_defs[i]);
    if (replacement == NULL) {
        return -1;
    }
    attr->descr = Py_NewRef(descr);
    int err = PyDict_SetItemString(dict, attr->name, replacement);
    Py_DECREF(replacement);
    PyType_Modified(attr->type);
    return err;
}

/* code.replace() takes the fields it is not given from the code object's
 * struct: while an exception route is in (trampoline.c), the exception
 * table must be the one Python code reads instead. */
static _PyCFunctionFastWithKeywords code_replace;
static PyMethodDef code_replace_def;
static PyObject *exceptiontable_name;   /* "co_exceptiontable", for good */

static PyObject *
code_replace_original(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyCodeObject *code = (PyCodeObject *)self;
    PyObject *own = li_own_exceptiontable(code);
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    int given = kwnames != NULL ? PySequence_Contains(kwnames, exceptiontable_name) : 0;
    if (given != 0 || own == code->co_exceptiontable) {
        return given < 0 ? NULL : code_replace(self, args, nargs, kwnames);
    }
    PyObject **all = PyMem_Malloc(sizeof(PyObject *) * (size_t)(nargs + nkw + 1));
    PyObject *names = PyTuple_New(nkw + 1);
    PyObject *result = NULL;
    if (all == NULL || names == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nargs + nkw; i++) {
        all[i] = args[i];
    }
    all[nargs + nkw] = own;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyTuple_SET_ITEM(names, i, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
    }
    PyTuple_SET_ITEM(names, nkw, Py_NewRef(exceptiontable_name));
    result = code_replace(self, all, nargs, names);
done:
    PyMem_Free(all);
    Py_XDECREF(names);
    return result;
}

static int
install_code_replace(void)
{
    exceptiontable_name = PyUnicode_InternFromString("co_exceptiontable");
    if (exceptiontable_name == NULL) {
        return -1;
    }
    for (PyMethodDef *def = PyCode_Type.tp_methods; def != NULL && def->ml_name != NULL; def++) {
        if (strcmp(def->ml_name, "replace") != 0) {
            continue;
        }
        if (def->ml_flags != (METH_FASTCALL | METH_KEYWORDS)) {
            break;
        }
        code_replace = (_PyCFunctionFastWithKeywords)(void (*)(void))def->ml_meth;
        code_replace_def = *def;
        code_replace_def.ml_meth = (PyCFunction)(void (*)(void))code_replace_original;
        PyObject *descr = PyDescr_NewMethod(&PyCode_Type, &code_replace_def);
        if (descr == NULL) {
            return -1;
        }
        int err = PyDict_SetItemString(PyCode_Type.tp_dict, "replace", descr);
        Py_DECREF(descr);
        PyType_Modified(&PyCode_Type);
        return err;
    }
    PyErr_SetString(PyExc_RuntimeError, "lowimpact: code.replace is not as expected");
    return -1;
}

/* Code equality compares bytecode: while a trampoline replaces a few units
 * of a code object, compare it as it was.  Nothing that runs Python code
 * happens during the comparison (constants are builtin types). */
static richcmpfunc code_richcompare;

static PyObject *
code_richcompare_original(PyObject *self, PyObject *other, int op)
{
    bool self_swapped = PyCode_Check(self) && li_trampoline_swap((PyCodeObject *)self);
    bool other_swapped = other != self && PyCode_Check(other) &&
                         li_trampoline_swap((PyCodeObject *)other);
    PyObject *result = code_richcompare(self, other, op);
    if (self_swapped) {
        li_trampoline_swap((PyCodeObject *)self);
    }
    if (other_swapped) {
        li_trampoline_swap((PyCodeObject *)other);
    }
    return result;
}

/* ---- the garbage collector's view ----------------------------------------
 *
 * gc.get_referents() and gc.get_referrers() see what tp_traverse visits:
 * functions, frames and generators visit the original where they hold a
 * shadow.  Code objects are not tracked by the collector, so collections
 * are indifferent to which of the two is visited. */

typedef struct {
    visitproc visit;
    void *arg;
} mapped_visit;

static int
visit_original(PyObject *op, void *arg)
{
    mapped_visit *mapped = (mapped_visit *)arg;
    if (op != NULL && PyCode_Check(op)) {
        op = (PyObject *)li_backend_original((PyCodeObject *)op);
    }
    return mapped->visit(op, mapped->arg);
}

typedef struct {
    PyTypeObject *type;
    traverseproc native;
} traverse_patch;

static traverse_patch traverse_patches[] = {
    {&PyFunction_Type, NULL},
    {&PyFrame_Type, NULL},
    {&PyGen_Type, NULL},
    {&PyCoro_Type, NULL},
    {&PyAsyncGen_Type, NULL},
};

#define N_TRAVERSE_PATCHES (sizeof(traverse_patches) / sizeof(traverse_patches[0]))

static int
traverse_mapped(PyObject *self, visitproc visit, void *arg)
{
    traverseproc native = NULL;
    for (size_t i = 0; i < N_TRAVERSE_PATCHES; i++) {
        if (Py_IS_TYPE(self, traverse_patches[i].type)) {
            native = traverse_patches[i].native;
            break;
        }
    }
    assert(native != NULL);
    /* Of a function's referents only its code can be a shadow (Python code
       never holds one to make it a default, say): a function that runs its
       original, which most do, is traversed as it is, as the collector
       traverses every function in each full collection. */
    if (li_all_shadows() == NULL ||
        (Py_IS_TYPE(self, &PyFunction_Type) &&
         li_shadow_probes((PyCodeObject *)((PyFunctionObject *)self)->func_code) == NULL))
    {
        return native(self, visit, arg);
    }
    mapped_visit mapped = {visit, arg};
    return native(self, visit_original, &mapped);
}

int
li_install_transparency(void)
{
    code_richcompare = PyCode_Type.tp_richcompare;
    PyCode_Type.tp_richcompare = code_richcompare_original;
    if (install_code_replace() < 0) {
        return -1;
    }
    for (size_t i = 0; i < N_TRAVERSE_PATCHES; i++) {
        traverse_patches[i].native = traverse_patches[i].type->tp_traverse;
        traverse_patches[i].type->tp_traverse = traverse_mapped;
    }
    for (size_t i = 0; i < N_PATCHES; i++) {
        const char *name = patches[i].name;
        getter get = mapped_code_get;
        setter set = NULL;
        if (strcmp(name, "__code__") == 0) {
            set = function_code_set;
        }
        else if (strcmp(name, "f_lasti") == 0) {
            get = frame_lasti_get;
        }
        else if (strcmp(name, "tb_lasti") == 0) {
            get = traceback_lasti_get;
        }
        else if (strcmp(name, "f_lineno") == 0) {
            get = frame_lineno_get;
            set = frame_lineno_set;
        }
        else if (strcmp(name, "tb_lineno") == 0) {
            get = traceback_lineno_get;
        }
        else if (strcmp(name, "co_stacksize") == 0) {
            get = code_stacksize_get;
        }
        else if (strcmp(name, "co_exceptiontable") == 0) {
            get = code_exceptiontable_get;
        }
        if (install(i, get, set) < 0) {
            return -1;
        }
    }
    return 0;
}
