/* JUMP and BRANCH on 3.10 (b310.h).
 *
 * 3.12 delivers BRANCH once the direction of a conditional jump is decided,
 * with the destination.  In a shadow, the way a conditional jump falls
 * through passes a BRANCH probe placed right after it; the way it jumps
 * goes to a stub after that, a BRANCH probe and a jump to where the
 * original jumps (shadow.c).  Both probes are one location, as natively:
 * they are armed and disarmed together, and disarming also points the jump
 * straight at its target, so that a disabled branch costs its taken way
 * nothing and its other way one JUMP_FORWARD.  The jump was made wide
 * enough for either argument.
 *
 * JUMP is a plain probe before JUMP_ABSOLUTE or JUMP_FORWARD.
 */

#include "b310.h"

bool
li_is_branch(int opcode)
{
    switch (opcode) {
    case POP_JUMP_IF_FALSE:
    case POP_JUMP_IF_TRUE:
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    /* 3.12 tests an exception's type with CHECK_EXC_MATCH and a
       POP_JUMP_IF_FALSE, which delivers BRANCH. */
    case JUMP_IF_NOT_EXC_MATCH:
    case FOR_ITER:
        return true;
    default:
        return false;
    }
}

bool
li_is_jump(int opcode)
{
    return opcode == JUMP_ABSOLUTE || opcode == JUMP_FORWARD;
}

/* Rewrites the argument of the jump, its prefixes included: frames of
 * other threads stand between instructions (3.10 only switches threads
 * there), this thread's at a probe. */
static void
write_jump(const li_branch_jump *j, uint8_t *code, bool via_stub)
{
    uint32_t arg = via_stub ? j->via_stub : j->direct;
    uint8_t *b = code + 2 * j->unit;
    for (int k = 0; k < j->size; k++) {
        b[2 * k + 1] = (uint8_t)(arg >> (8 * (j->size - 1 - k)));
    }
}

void
li_branch_set(li_site *s, bool armed)
{
    if (s->shadow->code == NULL) {
        return;
    }
    li_site *sites[2] = {s, s->twin};
    for (int k = 0; k < 2; k++) {
        li_site *site = sites[k];
        if (site == NULL) {
            continue;
        }
        if (site->armed != armed) {
            li_site_write(site, armed);
        }
        if (site->jump.unit >= 0) {
            write_jump(&site->jump, (uint8_t *)PyBytes_AS_STRING(s->shadow->code->co_code),
                       armed);
        }
    }
}
