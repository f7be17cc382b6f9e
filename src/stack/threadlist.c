/* Whether a walk of an interpreter's list of thread states holds together.
 * The list is read while threads start and end.  A thread state reached
 * through the next of one read a moment earlier may have been freed since,
 * and its memory be the thread state a thread is making, not yet in the
 * list: its next is what the allocator left there (0 from glibc's thread
 * cache, or zeroed memory), and its thread id (3.9-3.11), until the new
 * thread runs, that of the thread making it.  The walk ended there: the
 * threads after it were missing, and no name or only the maker's was
 * found (against shortlived.py: on 3.9,
 * one call of thread_names() in some 36,000 in CI; on 3.9-3.13, one in a
 * few thousand with 30-100 us between the reads of two thread states).
 * CPython links the list both ways and puts a thread state made at the
 * head, prev 0, the old head's prev then pointing to it; one that ends is
 * unlinked (its own prev and next left as they were) before it is freed. */
#define _GNU_SOURCE
#include "target.h"

#include <errno.h>
#include <sys/uio.h>

int
li_thread_linked(const li_sample *s, size_t first, uint64_t prev)
{
    /* (The head may have gained a prev since the interpreter was read: a
     * thread started meanwhile, which the walk may miss.  One that is not
     * in the list is found out further on: its next is no thread state
     * that names it, or it ends the walk, li_thread_list_ends().) */
    if (s->nthreads == first) {
        return 1;
    }
    /* Not necessarily the one before: those between may have ended since
     * (a thread unlinked keeps its next); a thread that stays cannot be
     * between the two, so none is missed. */
    for (size_t i = s->nthreads; prev != 0 && i-- > first;) {
        if (s->threads[i].tstate == prev) {
            return 1;
        }
    }
    return 0;
}

li_status
li_thread_list_ends(li_target *t, uint64_t interp, uint64_t prev, uint64_t last)
{
    const li_layout *L = &t->layout;
    uint64_t link = 0, fields[2] = {0, 0};
    /* (One system call reads its parts in order: the link to it, then the
     * thread state.) */
    struct iovec local[3] = {{&link, 8}, {&fields[0], 8}, {&fields[1], 8}};
    struct iovec remote[3] = {
        {(void *)(uintptr_t)(prev ? prev + (uint64_t)L->tstate_next
                                  : interp + (uint64_t)L->interp_threads_head), 8},
        {(void *)(uintptr_t)(last + (uint64_t)L->tstate_prev), 8},
        {(void *)(uintptr_t)(last + (uint64_t)L->tstate_next), 8}};
    ssize_t got = process_vm_readv(t->pid, local, 3, remote, 3, 0);
    if (got < 0 && errno != EFAULT) {
        return li_status_of(t, errno);
    }
    return got == 24 && link == last && fields[0] == prev && fields[1] == 0 ? LI_OK : LI_TORN;
}
