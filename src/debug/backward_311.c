/* 3.11: conditional jumps backward have opcodes of their own
 * (POP_JUMP_BACKWARD_IF_*, bpo-47120), as the loops' JUMP_BACKWARD has. */
#include "backward.h"

#include <opcode.h>

int
li_debug_branches_backward(PyCodeObject *code, int offset)
{
    /* co_code as dis shows it: made once, then kept by the code object. */
    PyObject *bytecode = PyCode_GetCode(code);   /* owned */
    if (bytecode == NULL) {
        return -1;
    }
    int result = 0;
    if (offset >= 0 && offset < PyBytes_GET_SIZE(bytecode)) {
        switch ((unsigned char)PyBytes_AS_STRING(bytecode)[offset]) {
        case JUMP_BACKWARD:
        case JUMP_BACKWARD_NO_INTERRUPT:
        case POP_JUMP_BACKWARD_IF_NOT_NONE:
        case POP_JUMP_BACKWARD_IF_NONE:
        case POP_JUMP_BACKWARD_IF_FALSE:
        case POP_JUMP_BACKWARD_IF_TRUE:
            result = 1;
            break;
        default:
            break;
        }
    }
    Py_DECREF(bytecode);
    return result;
}
