/* lowimpact._target: what tools/target.py needs of C.
 *
 * The builtin compile() asks whether its source is an AST object first, and
 * that question sets up the types of the `ast` module: 2-3 ms on 3.11-3.13
 * before the program's first line, which `python script.py` never spends.
 * The script is compiled here as python compiles it, from its bytes (the
 * tokenizer honours a coding declaration and a BOM), raising the same
 * "compile" audit event.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

PyDoc_STRVAR(compile_script_doc,
"compile_script(source, filename, /)\n--\n\n"
"The code object of a script's source (bytes without NUL), as\n"
"compile(source, filename, 'exec', dont_inherit=True) makes it.");

static PyObject *
compile_script(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "compile_script expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *source = args[0], *filename = args[1];
    if (!PyBytes_Check(source) || !PyUnicode_Check(filename)) {
        PyErr_SetString(PyExc_TypeError, "compile_script() takes bytes and a str");
        return NULL;
    }
    const char *text = PyBytes_AS_STRING(source);
    if (strlen(text) != (size_t)PyBytes_GET_SIZE(source)) {
        /* The C string would end there: compile() says what it says. */
        PyErr_SetString(PyExc_ValueError, "source code string cannot contain null bytes");
        return NULL;
    }
    PyCompilerFlags flags = _PyCompilerFlags_INIT;
    return Py_CompileStringObject(text, filename, Py_file_input, &flags, -1);
}

static PyMethodDef target_methods[] = {
    {"compile_script", (PyCFunction)(void (*)(void))compile_script, METH_FASTCALL,
     compile_script_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef target_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._target",
    .m_doc = "What lowimpact's tools need of C to run a program as python does.",
    .m_size = 0,
    .m_methods = target_methods,
};

PyMODINIT_FUNC
PyInit__target(void)
{
    return PyModuleDef_Init(&target_module);
}
