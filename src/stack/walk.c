/* The walk of a target's interpreters, threads and frames, from the layout
 * alone.  Nothing stops the target: every pointer read may be stale by the
 * time it is followed, so each step is checked (a code object's type, a
 * frame's position in its bytecode, the depth) and each thread's innermost
 * frame is read again after its frames were copied or walked: unless the
 * thread stayed on the stack it had when the walk began (same_stack(),
 * stayed_on()), the sample is torn. */
#define _GNU_SOURCE
#include "target.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_INTERPRETERS 64
#define MAX_THREADS 4096

static int32_t
i32_at(const unsigned char *buf, int64_t at)
{
    int32_t v;
    memcpy(&v, buf + at, sizeof v);
    return v;
}

/* Most fields read from one structure (a thread state) at a time. */
#define MAX_FIELDS 9

/* Several fields of one structure in one system call: fields[i] (an offset
 * into base, -1 for none) into out[i], n at most MAX_FIELDS; absent ones
 * read as 0. */
static int
read_fields(const li_target *t, uint64_t base, const int64_t *fields, uint64_t *out, int n)
{
    struct iovec local[MAX_FIELDS], remote[MAX_FIELDS];
    assert(n <= MAX_FIELDS);
    int k = 0;
    for (int i = 0; i < n; i++) {
        out[i] = 0;
        if (fields[i] >= 0) {
            local[k].iov_base = &out[i];
            local[k].iov_len = sizeof out[i];
            remote[k].iov_base = (void *)(uintptr_t)(base + (uint64_t)fields[i]);
            remote[k].iov_len = sizeof out[i];
            k++;
        }
    }
    if (k == 0) {
        return 0;
    }
    ssize_t got = process_vm_readv(t->pid, local, (unsigned long)k, remote, (unsigned long)k, 0);
    if (got < 0) {
        return errno ? errno : EIO;
    }
    return got == (ssize_t)(k * sizeof(uint64_t)) ? 0 : EFAULT;
}

li_status
li_status_of(li_target *t, int err)
{
    t->last_errno = err;
    if (err == ESRCH) {
        return LI_NO_PROCESS;
    }
    if (err == EPERM) {
        return LI_NO_PERMISSION;
    }
    /* A pointer that no longer leads anywhere: the target moved on. */
    return err == EFAULT ? LI_TORN : LI_OS_ERROR;
}

static int
grow(void **array, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need) {
        n *= 2;
    }
    void *p = realloc(*array, n * item);
    if (p == NULL) {
        return -1;
    }
    *array = p;
    *cap = n;
    return 0;
}

/* Where struct pthread keeps the kernel's tid, where the threads library
 * does not say (li_attach asks glibc first; musl does not say): learnt
 * from the struct pthread of up to LEARN_THREADS threads of a sample, at
 * most LEARN_TRIES times (a process in another PID namespace keeps tids
 * that this /proc does not list: never learnt). */
#define LEARN_THREADS 64
#define LEARN_TRIES 16
#define PTHREAD_WORDS 256

static int
compare_tids(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The target's tids (/proc/PID/task), sorted, into *tids (malloc'd, the
 * caller frees it); their number, 0 if none could be listed. */
static size_t
list_tids(pid_t pid, int32_t **tids)
{
    char path[64];
    size_t n = 0, cap = 0;
    *tids = NULL;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int tid = atoi(e->d_name);
        if (tid <= 0) {
            continue;       /* "." and ".." */
        }
        if (grow((void **)tids, &cap, n + 1, sizeof **tids)) {
            n = 0;
            break;
        }
        (*tids)[n++] = tid;
    }
    closedir(dir);
    if (n > 1) {
        qsort(*tids, n, sizeof **tids, compare_tids);
    }
    return n;
}

/* Learn t->pthread_tid_offset from the threads of sample s (their thread_id
 * is their pthread_t, the address of their struct pthread): the offset is
 * that of the one 32-bit word that holds, in every thread's struct pthread,
 * a tid of the target, a different one in each.  Taking the first word
 * that holds some tid, as this did before, went wrong whenever a thread's
 * tid equalled the high half of an address in the mappings (0x7e00-0x7fff,
 * tids a busy machine reaches): the high half of struct pthread's list
 * pointers, which comes before the tid, was then every thread's "tid", no
 * Thread's _native_id matched and all names but that one thread's were
 * lost.  Such a word holds the same value in every thread; with a single
 * thread it cannot be told from the tid, and nothing is learnt while more
 * than one word would do. */
static void
learn_pthread_tid_offset(li_target *t, const li_sample *s)
{
    size_t n = s->nthreads < LEARN_THREADS ? s->nthreads : LEARN_THREADS, nblocks = 0;
    if (n == 0) {
        return;
    }
    int32_t *tids;
    size_t ntids = list_tids(t->pid, &tids);
    int32_t (*blocks)[PTHREAD_WORDS] = ntids ? malloc(n * sizeof *blocks) : NULL;
    for (size_t i = 0; blocks && i < n; i++) {
        /* (A thread that exited since the walk has no struct left: not
         * compared.) */
        if (s->threads[i].thread_id
            && li_read(t, s->threads[i].thread_id, blocks[nblocks], sizeof blocks[0]) == 0) {
            nblocks++;
        }
    }
    int found = -1, candidates = 0;
    /* (The first words are the thread control block's pointers to itself.) */
    for (int w = 8; nblocks && w < PTHREAD_WORDS; w++) {
        size_t j;
        for (j = 0; j < nblocks; j++) {
            int32_t v = blocks[j][w];
            if (v <= 0 || bsearch(&v, tids, ntids, sizeof *tids, compare_tids) == NULL) {
                break;
            }
            size_t k = 0;
            while (k < j && blocks[k][w] != v) {
                k++;
            }
            if (k < j) {
                break;      /* the same in two threads: not a tid */
            }
        }
        if (j == nblocks) {
            candidates++;
            found = w;
        }
    }
    t->pthread_tid_tries++;
    if (candidates == 1) {
        t->pthread_tid_offset = found * 4;
    }
    else if (t->pthread_tid_tries >= LEARN_TRIES) {
        t->pthread_tid_offset = -2;
    }
    free(blocks);
    free(tids);
}

/* The kernel's tids of the threads of sample s, for versions whose thread
 * state knows only the thread's pthread_t: read from its struct pthread
 * (0 where the offset is not known, or the thread exited since). */
static void
tids_from_pthreads(li_target *t, li_sample *s)
{
    if (t->pthread_tid_offset == -1) {
        learn_pthread_tid_offset(t, s);
    }
    for (size_t i = 0; i < s->nthreads; i++) {
        li_raw_thread *th = &s->threads[i];
        int32_t tid = 0;
        th->native_id = 0;
        if (t->pthread_tid_offset >= 0 && th->thread_id
            && li_read(t, th->thread_id + (uint64_t)t->pthread_tid_offset, &tid,
                       sizeof tid) == 0 && tid > 0) {
            th->native_id = (uint64_t)tid;
        }
    }
}

/* The innermost frame of a thread state (3.11-3.12 go through the C frame). */
static int
top_frame(const li_target *t, uint64_t tstate, const uint64_t *ts_fields, uint64_t *frame)
{
    const li_layout *L = &t->layout;
    if (L->tstate_frame >= 0) {
        *frame = ts_fields[4];
        return 0;
    }
    uint64_t cframe = ts_fields[5];
    (void)tstate;
    *frame = 0;
    if (cframe == 0) {
        return 0;
    }
    return li_read(t, cframe + (uint64_t)L->cframe_current_frame, frame, sizeof *frame);
}

/* Copy the thread's stack chunk from its start to the end of the innermost
 * frame into s->chunk (nothing where the version has no chunks, or the
 * frame is not in the chunk: a generator's, or one of an older chunk). */
static li_status
read_chunk(li_target *t, li_sample *s, uint64_t chunk, uint64_t frame)
{
    const li_layout *L = &t->layout;
    s->chunk_len = 0;
    s->chunk_start = 0;
    s->chunk_size = 0;
    s->outside_addr = 0;
    if (chunk == 0 || frame < chunk + 16 || frame - chunk > (1u << 20)) {
        return LI_OK;
    }
    size_t len = (size_t)(frame - chunk) + (size_t)L->frame_size;
    if (grow((void **)&s->chunk, &s->chunk_cap, len, 1)) {
        return LI_NO_MEMORY;
    }
    int err = li_read(t, chunk, s->chunk, len);
    if (err) {
        return err == EFAULT ? LI_OK : li_status_of(t, err);
    }
    uint64_t size = li_u64_at(s->chunk, 8);     /* _PyStackChunk: previous, size */
    s->chunk_size = size;
    if (len <= size) {
        s->chunk_len = len;
        s->chunk_start = chunk;
    }
    return LI_OK;
}

/* The copy of the frame at `frame` in what s holds (its chunk's copy, of
 * len bytes, or the frame outside it), or NULL. */
static const unsigned char *
copy_of(const li_layout *L, const li_sample *s, size_t len, uint64_t frame)
{
    uint64_t size = (uint64_t)L->frame_size;
    if (frame != 0 && frame == s->outside_addr) {
        return s->outside;
    }
    /* (Written so that a torn address cannot wrap around.) */
    if (len < size || frame < s->chunk_start || frame - s->chunk_start > len - size) {
        return NULL;
    }
    return s->chunk + (frame - s->chunk_start);
}

/* Whether the chain of frames from `from`, followed in the copies s holds
 * (len bytes of its chunk), reaches `to`. */
static int
reaches_in_copy(const li_layout *L, const li_sample *s, size_t len, uint64_t from, uint64_t to)
{
    for (int depth = 0; depth < LI_MAX_DEPTH; depth++) {
        const unsigned char *copy = copy_of(L, s, len, from);
        if (from == to) {
            return 1;
        }
        if (copy == NULL) {
            return 0;
        }
        uint64_t back = li_u64_at(copy, L->frame_back);
        /* Older frames lie lower in a chunk (a generator's frame, in its
         * object, may lie anywhere): anything else is not a chain. */
        if (back >= from && from != s->outside_addr) {
            return 0;
        }
        from = back;
    }
    return 0;
}

/* Whether a thread whose innermost frame was `before` when the copies s
 * holds (len bytes of its chunk) were begun, and `after` when they were
 * done, left the frames up to `before` as they were: it is in the same
 * frame, or it only called deeper (the chain of `after`, in the copies,
 * reaches `before`).  A thread that returned past `before` may have put
 * other calls' frames at the addresses of those it left, and the copy may
 * hold either: torn.  (One that returned and called back to the same
 * address goes unnoticed: see docs/STACK.md.) */
static int
same_stack(const li_layout *L, const li_sample *s, size_t len, uint64_t before, uint64_t after)
{
    return before == after || reaches_in_copy(L, s, len, after, before);
}

/* Whether two copies of a frame's header are of the same call: the same
 * code object, called from the same frame. */
static int
same_call(const li_layout *L, const unsigned char *a, const unsigned char *b)
{
    return li_u64_at(a, L->frame_code) == li_u64_at(b, L->frame_code)
           && li_u64_at(a, L->frame_back) == li_u64_at(b, L->frame_back);
}

/* The instruction sys.monitoring (3.12+) hides under the opcode *op read
 * at instruction `index` of the code object at `code`, into *op: where a
 * tool wants LINE or INSTRUCTION events (a debugger, a tracer, settrace,
 * which 3.12 runs on sys.monitoring), it puts INSTRUMENTED_LINE or
 * INSTRUMENTED_INSTRUCTION over the instruction and keeps the instruction
 * in the code object's _PyCoMonitoringData, where the interpreter looks it
 * up when it runs them: LINE's in lines[index], INSTRUCTION's (also under
 * a LINE) in per_instruction_opcodes[index].  A return under one would
 * pass in_its_call() for an instruction that returns nowhere.  An opcode
 * that hides nothing is left as it is, without a read. */
static li_status
under_instrumentation(li_target *t, uint64_t code, int64_t index, unsigned char *op)
{
    const li_layout *L = &t->layout;
    if (L->code_monitoring < 0
        || (*op != L->op_instrumented_line && *op != L->op_instrumented_instruction)) {
        return LI_OK;
    }
    uint64_t monitoring;
    int err = li_read(t, code + (uint64_t)L->code_monitoring, &monitoring, sizeof monitoring);
    if (err) {
        return li_status_of(t, err);
    }
    int64_t fields[2] = {L->monitoring_lines, L->monitoring_per_instruction_opcodes};
    uint64_t arrays[2];
    err = monitoring ? read_fields(t, monitoring, fields, arrays, 2) : EFAULT;
    /* (index comes from the frame's position, not yet checked against its
     * code's size (read_heads()): the address is computed unsigned, and a
     * torn one only makes the read fail or read some other byte.) */
    if (err == 0 && *op == L->op_instrumented_line) {
        uint64_t at = (uint64_t)index * (uint64_t)L->line_data_size
                      + (uint64_t)L->line_data_opcode;
        err = arrays[0] ? li_read(t, arrays[0] + at, op, 1) : EFAULT;
    }
    if (err == 0 && *op == L->op_instrumented_instruction) {
        err = arrays[1] ? li_read(t, arrays[1] + (uint64_t)index, op, 1) : EFAULT;
    }
    /* (No monitoring data, or no array, under an instrumented opcode: the
     * frame's code object is not the one whose bytecode was read.) */
    return err ? li_status_of(t, err) : LI_OK;
}

/* LI_OK if the frame copied into buf, below a frame it called and at its
 * first instruction, is the shim frame of 3.13's CALL_ALLOC_AND_ENTER_INIT,
 * else LI_TORN.  That call pushes a frame of a code object of the
 * interpreter's own (_Py_InitCleanup, Python/specialize.c), whose
 * EXIT_INIT_CHECK checks that __init__ returned None once it returns,
 * and then the __init__ frame above it (Python/bytecodes.c): the shim is
 * in that call while still at its first instruction, where any other
 * frame has not started.  Its code object is known from the ELF symbols,
 * or from the first frame found at an EXIT_INIT_CHECK (no other code
 * object begins with one) whose code object is of type code (not freed
 * memory read by a torn walk), a static object that never moves. */
static li_status
shim_in_its_call(li_target *t, const unsigned char *buf)
{
    const li_layout *L = &t->layout;
    uint64_t code = li_u64_at(buf, L->frame_code);
    if (t->init_cleanup) {
        return code == t->init_cleanup ? LI_OK : LI_TORN;
    }
    unsigned char op;
    uint64_t type = 0;
    int err = li_read(t, li_u64_at(buf, L->frame_instr), &op, 1);
    if (err == 0) {
        err = li_read(t, code + (uint64_t)L->object_type, &type, sizeof type);
    }
    if (err) {
        return li_status_of(t, err);
    }
    if (op != L->op_exit_init_check || !t->code_type || type != t->code_type) {
        return LI_TORN;
    }
    t->init_cleanup = code;
    return LI_OK;
}

/* Where a frame of a chain is, seen from the frame walked before it. */
enum li_place {
    LI_INNERMOST = 0,       /* none: it is the thread's innermost */
    LI_CALLED_PYTHON = 1,   /* a frame it pushed for a call */
    LI_CALLED_C = 2,        /* an entry frame: it called C, which called Python */
    LI_CALLED_GENERATOR = 3,/* the frame of a generator it resumed */
};

/* Whether the frame copied into buf, at byte offset `offset` of its code,
 * is where a chain may have it (interpreter frames, see walk_frames()):
 * LI_OK, else LI_TORN.  One below a frame it called (LI_CALLED_PYTHON)
 * must be in that call (3.12+): its stacktop set, past its first
 * instruction.  So must one below a generator's frame it resumed, which
 * must not be at a return or a yield either (every version): a returned
 * frame's stacktop is set too, and the generator's frame, in the generator
 * object, is not copied with the chunk, so that the copy's order (the
 * callee's frame written before the caller's stacktop, walk_frames())
 * says nothing of when the two were read; a generator's previous names
 * the frame that last resumed it, since reused by another call.  The
 * innermost one (or one that called C) must not have
 * returned: it runs (3.12+: stacktop -1), or is in a call that the copy was
 * made too early to hold (stacktop set, at an instruction that calls) --
 * then the chain is the stack the thread had just before that call -- but
 * is not at a return (nor a yield, for a generator's frame), where the
 * interpreter leaves the frame, whose caller may have called again since:
 * the frame's contents and its caller's then no longer belong together.
 * A frame that has not started passes (3.12+: stacktop set, at or before
 * its first instruction; 3.13 cannot tell it from one waiting for the GIL
 * in its RESUME), though a call initialises its frame first
 * (_PyFrame_Initialize) and links it to its caller last: the copy may
 * hold the new frame with the previous of the call that had that address
 * before, which for a traced target is as often a callback's, whose entry
 * frame on the C stack belongs to another callback by the time it is read.
 * read_heads() checks that such a frame lies where its caller's ends.
 * (3.11 does not tell a frame that runs from one in a call: there only
 * the rule on returns holds, and it drops a copy made while the innermost
 * frame was at its return as well.) */
static li_status
in_its_call(li_target *t, const unsigned char *buf, int64_t offset, enum li_place place)
{
    const li_layout *L = &t->layout;
    if (L->frame_stacktop >= 0) {
        int stacktop = i32_at(buf, L->frame_stacktop);
        if (place == LI_CALLED_PYTHON && stacktop >= 0 && offset == 0
            && L->op_exit_init_check >= 0) {
            return shim_in_its_call(t, buf);
        }
        if (place == LI_CALLED_PYTHON || place == LI_CALLED_GENERATOR) {
            if (stacktop < 0 || offset <= 0) {
                return LI_TORN;
            }
            if (place == LI_CALLED_PYTHON) {
                return LI_OK;
            }
        }
        else if (stacktop < 0) {
            return LI_OK;
        }
        else if (offset <= 0) {
            return LI_OK;
        }
    }
    else if (place == LI_CALLED_PYTHON || L->op_return_value < 0 || offset < 0) {
        return LI_OK;
    }
    /* (The code object's bytecode, read after the frame: its opcodes
     * change in place, but a return stays a return.) */
    unsigned char op;
    int err = li_read(t, li_u64_at(buf, L->frame_instr), &op, 1);
    if (err) {
        return li_status_of(t, err);
    }
    li_status st = under_instrumentation(t, li_u64_at(buf, L->frame_code),
                                         offset / L->lasti_unit, &op);
    if (st != LI_OK) {
        return st;
    }
    int returned = op == L->op_return_value || op == L->op_return_const
                   || op == L->op_yield_value || op == L->op_instrumented_return_value
                   || op == L->op_instrumented_return_const
                   || op == L->op_instrumented_yield_value;
    return returned ? LI_TORN : LI_OK;
}

/* Frames of a thread's innermost ones read again after its chunk. */
#define TOP_FRAMES 3

/* The byte offset of a copied interpreter frame's position in its code. */
static int64_t
offset_in_code(const li_layout *L, const unsigned char *frame)
{
    uint64_t code = li_u64_at(frame, L->frame_code);
    return (int64_t)(li_u64_at(frame, L->frame_instr) - (code + (uint64_t)L->code_adaptive));
}

/* LI_OK if the innermost TOP_FRAMES frames of the chain from `before` in
 * the copies s holds (len bytes of its chunk), read again now, are of the
 * same calls as in the copies, else LI_TORN.  A loop that calls one
 * function, then another, puts their frames at the same addresses: a
 * thread found in the same frame before and after the copy may have been
 * in the other call when it was made, which shows the frames it had left
 * above the one it was in, with their callers of then.
 *
 * The frames read again must also be where a chain may have them
 * (in_its_call(): interpreter frames), callers read before the frames
 * they called.  The copy
 * takes long next to a call (each cache line the target writes moves
 * between CPUs): a caller's line may be copied while it is in one call
 * and its callee's, later, after it returned and another call took both
 * addresses.  The frames read again then hold those of the copy only if
 * the same happened again, in the same frames, while they were read. */
static li_status
still_same_calls(li_target *t, li_sample *s, size_t len, uint64_t before)
{
    const li_layout *L = &t->layout;
    const unsigned char *copies[TOP_FRAMES];
    uint64_t addrs[TOP_FRAMES];
    unsigned long k = 0;
    uint64_t frame = before;
    /* A generator's frame, outside the chunk, copied with it (its caller
     * in the chunk may have finished, and another call at the same address
     * made a generator where the finished one was) */
    int top_outside = frame != 0 && frame == s->outside_addr;
    unsigned char top[LI_MAX_FRAME_SIZE];
    /* whether the generator was resumed from C (an entry frame, on the C
     * stack, between it and the frames in the chunk) */
    int via_entry = 0;
    if (top_outside) {
        frame = li_u64_at(s->outside, L->frame_back);
        if (L->owner_cstack >= 0 && copy_of(L, s, len, frame) == NULL) {
            unsigned char entry[LI_MAX_FRAME_SIZE];
            int err = li_read(t, frame, entry, (size_t)L->frame_size);
            if (err) {
                return li_status_of(t, err);
            }
            via_entry = entry[L->frame_owner] == L->owner_cstack;
            frame = via_entry ? li_u64_at(entry, L->frame_back) : 0;
        }
    }
    while (k < TOP_FRAMES) {
        const unsigned char *copy = copy_of(L, s, len, frame);
        if (copy == NULL || copy == s->outside) {
            break;
        }
        /* (Frames of a chunk lie one above the other, callers lower.) */
        if (k > 0 && frame >= addrs[k - 1]) {
            return LI_TORN;
        }
        addrs[k] = frame;
        copies[k++] = copy;
        frame = li_u64_at(copy, L->frame_back);
    }
    /* One read of the bytes from the lowest frame to the end of the
     * innermost, rather than one per frame, then the generator's frame:
     * the sooner a callee is read after its caller, the less the thread
     * can have done in between. */
    struct iovec local[2], remote[2];
    unsigned long n = 0;
    size_t total = 0;
    uint64_t low = k ? addrs[k - 1] : 0;
    if (k) {
        size_t span = (size_t)(addrs[0] - low) + (size_t)L->frame_size;
        if (grow((void **)&s->again, &s->again_cap, span, 1)) {
            return LI_NO_MEMORY;
        }
        local[n].iov_base = s->again;
        local[n].iov_len = span;
        remote[n].iov_base = (void *)(uintptr_t)low;
        remote[n++].iov_len = span;
        total += span;
    }
    if (top_outside) {
        local[n].iov_base = top;
        local[n].iov_len = (size_t)L->frame_size;
        remote[n].iov_base = (void *)(uintptr_t)before;
        remote[n++].iov_len = (size_t)L->frame_size;
        total += (size_t)L->frame_size;
    }
    if (n == 0) {
        return LI_OK;
    }
    ssize_t got = process_vm_readv(t->pid, local, n, remote, n, 0);
    if (got < 0) {
        return li_status_of(t, errno);
    }
    if ((size_t)got != total || (top_outside && !same_call(L, top, s->outside))) {
        return LI_TORN;
    }
    for (unsigned long i = 0; i < k; i++) {
        if (!same_call(L, s->again + (addrs[i] - low), copies[i])) {
            return LI_TORN;
        }
    }
    if (L->frame_kind != LI_INTERPRETER_FRAME) {
        return LI_OK;
    }
    if (top_outside) {
        li_status st = in_its_call(t, top, offset_in_code(L, top), LI_INNERMOST);
        if (st != LI_OK) {
            return st;
        }
    }
    for (unsigned long i = 0; i < k; i++) {
        const unsigned char *now = s->again + (addrs[i] - low);
        if (L->owner_cstack >= 0 && now[L->frame_owner] == L->owner_cstack) {
            break;      /* what is below an entry frame called C */
        }
        enum li_place place = i > 0 ? LI_CALLED_PYTHON
                              : !top_outside ? LI_INNERMOST
                              : via_entry ? LI_CALLED_C : LI_CALLED_GENERATOR;
        li_status st = in_its_call(t, now, offset_in_code(L, now), place);
        if (st != LI_OK) {
            return st;
        }
    }
    return LI_OK;
}

#define LI_STALE 100   /* snapshot(): the cache no longer describes the thread */

/* The thread's fields, its stack chunk and its innermost frame read before
 * and after the chunk, all in one system call, from where the thread's
 * cache says they are.  LI_OK with tv, *frame and s->chunk filled (the
 * copy holds the stack of the moment the innermost frame was read: the
 * thread stayed on it, same_stack()), LI_TORN, LI_STALE (read the slow
 * way), or an error. */
static li_status
snapshot(li_target *t, li_sample *s, struct li_thread_cache *tc, const int64_t *ts_fields,
         uint64_t *tv, uint64_t *frame)
{
    const li_layout *L = &t->layout;
    struct iovec local[MAX_FIELDS + 7], remote[MAX_FIELDS + 7];
    int k = 0;
    size_t total = 0;
#define ADD(addr, ptr, n) do { \
        local[k].iov_base = (ptr); local[k].iov_len = (n); \
        remote[k].iov_base = (void *)(uintptr_t)(addr); remote[k].iov_len = (n); \
        total += (n); k++; } while (0)
    for (int i = 0; i < MAX_FIELDS; i++) {
        tv[i] = 0;
        if (ts_fields[i] >= 0) {
            ADD(tc->tstate + (uint64_t)ts_fields[i], &tv[i], sizeof tv[i]);
        }
    }
    int via_cframe = L->tstate_frame < 0;
    /* (3.11, 3.12: through either of the thread's last two C frames, the
     * one tstate->cframe names before and after.) */
    uint64_t before = 0, after = 0, cframe_after = 0, before2 = 0, after2 = 0;
    if (via_cframe) {
        ADD(tc->cframe + (uint64_t)L->cframe_current_frame, &before, sizeof before);
        if (tc->cframe2) {
            ADD(tc->cframe2 + (uint64_t)L->cframe_current_frame, &before2, sizeof before2);
        }
    }
    /* The chunk's size is the target's: one too small to hold the chunk's
     * header (previous, size) and a frame cannot be what was read last
     * time, and a copy of it would not cover the bytes compared below (its
     * size, at 8) nor a frame: the slow way reads the thread afresh. */
    if (tc->chunk_size < 16 + (uint64_t)L->frame_size) {
        return LI_STALE;
    }
    /* Room for the thread to have gone deeper since the last sample. */
    size_t len = (size_t)(tc->used + 4096 < tc->chunk_size ? tc->used + 4096 : tc->chunk_size);
    if (grow((void **)&s->chunk, &s->chunk_cap, len, 1)) {
        return LI_NO_MEMORY;
    }
    ADD(tc->chunk, s->chunk, len);
    if (tc->outside) {
        ADD(tc->outside, s->outside, (size_t)L->frame_size);
    }
    if (via_cframe) {
        ADD(tc->cframe + (uint64_t)L->cframe_current_frame, &after, sizeof after);
        if (tc->cframe2) {
            ADD(tc->cframe2 + (uint64_t)L->cframe_current_frame, &after2, sizeof after2);
        }
        ADD(tc->tstate + (uint64_t)L->tstate_cframe, &cframe_after, sizeof cframe_after);
    }
    else {
        ADD(tc->tstate + (uint64_t)L->tstate_frame, &after, sizeof after);
    }
#undef ADD
    ssize_t got = process_vm_readv(t->pid, local, (unsigned long)k, remote, (unsigned long)k, 0);
    if (got < 0 && errno != EFAULT) {
        return li_status_of(t, errno);
    }
    if (got != (ssize_t)total || tv[6] != tc->chunk || li_u64_at(s->chunk, 8) != tc->chunk_size
        || (via_cframe && (tv[5] != cframe_after
                           || (tv[5] != tc->cframe && (tv[5] != tc->cframe2 || !tv[5]))))) {
        return LI_STALE;
    }
    if (!via_cframe) {
        before = tv[4];
    }
    else if (tv[5] != tc->cframe) {
        before = before2;
        after = after2;
    }
    s->chunk_start = tc->chunk;
    s->chunk_size = tc->chunk_size;
    s->outside_addr = tc->outside;
    if (L->frame_stacktop >= 0) {
        /* The walk checks the copy's frames themselves (in_its_call()):
         * it starts where the thread was after the copy if it had only
         * gone deeper by then, else where it was before. */
        if (after != before && reaches_in_copy(L, s, len, after, before)) {
            before = after;
        }
    }
    else if (!same_stack(L, s, len, before, after)) {
        return LI_TORN;
    }
    li_status st = still_same_calls(t, s, len, before);
    if (st != LI_OK) {
        return st;
    }
    *frame = before;
    if (before >= tc->chunk + 16 && before - tc->chunk + (uint64_t)L->frame_size <= len) {
        s->chunk_len = (size_t)(before - tc->chunk) + (size_t)L->frame_size;
        tc->used = s->chunk_len;
        /* The innermost frame is back in the chunk: a generator's frame
         * seen outside it before is not to be read with every snapshot
         * from now on (its address may be freed memory by then); the
         * next time the innermost frame is outside, it is noted again. */
        tc->outside = 0;
        return LI_OK;
    }
    if (before >= tc->chunk && before < tc->chunk + tc->chunk_size) {
        return LI_STALE;    /* deeper than the copy */
    }
    /* The innermost frame is elsewhere (a generator's): the frames below
     * it in the chunk are in the copy; the walk reads it on its own unless
     * it is the one copied with them, and the next snapshot copies it. */
    s->chunk_len = len;
    tc->outside = before;
    return LI_OK;
}

/* The thread's innermost frame, read again into *now. */
static li_status
innermost_now(li_target *t, uint64_t tstate, const int64_t *ts_fields, uint64_t *now)
{
    uint64_t again[MAX_FIELDS];
    int err = read_fields(t, tstate, ts_fields, again, MAX_FIELDS);
    if (err == 0) {
        err = top_frame(t, tstate, again, now);
    }
    return err ? li_status_of(t, err) : LI_OK;
}

/* LI_OK if the thread's innermost frame is still `frame`, or another of
 * the same stack in the copies s holds (same_stack()), and its innermost
 * frames still those calls (still_same_calls()), else LI_TORN. */
static li_status
still_at(li_target *t, uint64_t tstate, const int64_t *ts_fields, uint64_t frame,
         li_sample *s)
{
    uint64_t now;
    li_status st = innermost_now(t, tstate, ts_fields, &now);
    if (st != LI_OK) {
        return st;
    }
    if (!same_stack(&t->layout, s, s->chunk_len, frame, now)) {
        return LI_TORN;
    }
    return still_same_calls(t, s, s->chunk_len, frame);
}

/* Frames a thread may have gone deeper by while its frames were read one
 * by one, for the check that it stayed on them (stayed_on()). */
#define DEEPER_AT_MOST 16

/* For frames read one by one (frame objects, generators' frames): LI_OK if
 * the thread, whose innermost frame was `frame` when the walk of its count
 * frames from s->frames[first] began, is now deeper on a chain that
 * reaches `frame` (read back up to DEEPER_AT_MOST frames) or, for frame
 * objects, in one of those frames (it returned into that stack), else
 * LI_TORN.  A frame object is its call's alone while it lives, so the
 * stack walked is that of the moment its innermost frame was read, but
 * for the positions of the frames the thread returned into, which it has
 * run on since; frames in a chunk are not (same_stack()). */
static li_status
stayed_on(li_target *t, const li_sample *s, size_t first, size_t count, uint64_t tstate,
          const int64_t *ts_fields, uint64_t frame)
{
    uint64_t now;
    li_status st = innermost_now(t, tstate, ts_fields, &now);
    if (st != LI_OK) {
        return st;
    }
    for (size_t i = first; i < first + count; i++) {
        if (s->frames[i].addr == now
            && (now == frame || t->layout.frame_kind == LI_FRAME_OBJECT)) {
            return LI_OK;
        }
    }
    for (int depth = 0; depth < DEEPER_AT_MOST && now != 0; depth++) {
        int err = li_read(t, now + (uint64_t)t->layout.frame_back, &now, sizeof now);
        if (err) {
            return li_status_of(t, err);
        }
        if (now == frame) {
            return LI_OK;
        }
    }
    return LI_TORN;
}

/* Whether a thread whose chain of `count` frames ends in a generator's
 * frame with nothing below it, found with the C frame `cframe` of the
 * thread state `tstate` (3.10, 3.11), runs that generator in its first C
 * frames: *first 1 if so.  A generator resumed from C links its frame to
 * the thread's frame of then (3.11: tstate->cframe->current_frame,
 * ceval.c; 3.10: tstate->frame, genobject.c), and unlinks it when it
 * suspends: a frame with nothing below it is either that of a generator
 * the thread's first C frames run, or one read while it was suspended,
 * which the generator's state cannot tell: it may run again by the time
 * the state is read, and a frame object copied a cache line at a time
 * while its generator suspended and resumed holds no f_back and a state
 * that runs, again in a second copy made the same way (3.10's genloop
 * kept the generator alone in 1 of 4,000-100,000 samples).  The C frames
 * tell: each points to the C frame below it, and the thread's first
 * `links` lead to the thread state's root C frame, where any more lead to
 * frames of the stack that the read missed: one per frame walked (3.10),
 * or one per frame walked that was entered from C (3.11: is_entry, the
 * generator's and any called back from C above it, as by sorted()'s key;
 * counting one alone tore every read of such a stack). */
static li_status
runs_in_first_cframe(li_target *t, uint64_t tstate, uint64_t cframe, size_t links, int *first)
{
    const li_layout *L = &t->layout;
    uint64_t root = tstate + (uint64_t)L->tstate_root_cframe;
    *first = 0;
    for (size_t i = 0; i < links; i++) {
        if (cframe == 0 || cframe == root) {
            return LI_OK;
        }
        int err = li_read(t, cframe + (uint64_t)L->cframe_previous, &cframe, sizeof cframe);
        if (err) {
            return li_status_of(t, err);
        }
    }
    *first = cframe == root;
    return LI_OK;
}

/* 3.9 has no C frames to count (runs_in_first_cframe()), but a thread's
 * depth bounds the frames below a generator's frame that ends its chain:
 * one per frame that runs (3.9.18: <module> 1, a function it calls 2), one
 * per C call that guards against recursion, and on leaving a frame the
 * depth drops before the thread's frame does (ceval.c).  A thread deeper
 * than its frames walked by more than RECURSION_SLACK, when its frame was
 * read and again after the generator's second copy, has frames the read
 * missed (genloop, where a frame object copied while its generator
 * suspended and resumed holds no f_back and a state that runs, kept the
 * generator alone in 141 of 451,244 samples at the highest rate, 3 of
 * 696,885 with this); a generator resumed from C at a thread's bottom and
 * parked in a lock's acquire() (3 frames, 5 deep: cbottom.py) is kept.
 * One whose frames call back through C counts those C calls too (next,
 * sorted and list.sort when sorted()'s key runs: 4 frames, 8 deep in
 * cback.py), which no bound on the depth tells from frames missed: a
 * thread deeper than the bound is kept only if DEEP_COPIES copies of the
 * generator's frame, each read with the thread's innermost frame and
 * depth, find the generator running, linked to nothing, the thread in the
 * same innermost frame and exactly as deep as when the walk began.  A
 * thread that is where the walk says stays so (a generator parked, or
 * running in a frame above it); a read that missed frames has to catch
 * the generator suspended and resumed between the reads of two cache
 * lines of its frame in every copy. */
#define RECURSION_SLACK 2
#define DEEP_COPIES 8

/* Whether frame lies in one of the stack chunks from `chunk` back (the
 * thread's chunk list, newest first): *found 1 if so, with that chunk's
 * bounds in range[0], range[1]. */
static li_status
in_a_chunk(li_target *t, uint64_t chunk, uint64_t frame, int *found, uint64_t *range)
{
    *found = 0;
    for (int n = 0; chunk != 0 && n < 1024; n++) {
        uint64_t head[2];       /* _PyStackChunk: previous, size */
        int err = li_read(t, chunk, head, sizeof head);
        if (err) {
            return li_status_of(t, err);
        }
        if (frame >= chunk + sizeof head && frame - chunk < head[1]) {
            *found = 1;
            range[0] = chunk;
            range[1] = chunk + head[1];
            return LI_OK;
        }
        chunk = head[0];
    }
    return LI_OK;
}

/* The frames from `frame` outwards into s, the innermost frame of the
 * thread state tstate, whose fields (ts_fields of li_take_sample) tv holds
 * as they were when `frame` was read; *outside counts those read on their
 * own rather than from the chunk's copy.
 *
 * Where the interpreter marks running frames (frame_stacktop, 3.12+), a
 * frame below a frame it pushed must be in that call (in_its_call()): the
 * interpreter sets stacktop to -1 whenever a frame runs
 * (_PyFrame_GetStackPointer on every resumption) and to 0 or more when it
 * pushes a frame for a call (_PyFrame_SetStackPointer before the new frame
 * becomes the current one, which the call has initialised first).  It is
 * 0 or more as well in a new frame that has not started, whose position is
 * then before its first instruction, where no call is, and in a frame that
 * has returned, whose caller then runs or has called again at its address.
 * A frame the thread has returned from keeps its contents, so the chain
 * from an innermost frame read some time before the copy may pass through
 * frames the thread left, into frames since reused by other calls (a leaf
 * under the caller of the other leaf): the caller it names then runs (-1)
 * unless it has made another call, whose frame, at the same address, was
 * written before the caller's stacktop; the copy reads lower addresses
 * first, so it holds that call's frame or a later one.  A later one is
 * where the rule falls short: a copy takes long next to a call, and the
 * thread may have returned from the caller and called at both addresses
 * again between the copies of their cache lines.  still_same_calls()
 * checks the innermost frames a second time for that. */
static li_status
walk_frames(li_target *t, li_sample *s, uint64_t frame, uint64_t tstate, const uint64_t *tv,
            size_t *count, size_t *outside, int *runs_generator)
{
    const li_layout *L = &t->layout;
    unsigned char buf[LI_MAX_FRAME_SIZE];
    if ((size_t)L->frame_size > sizeof buf) {
        return LI_UNSUPPORTED;
    }
    *count = 0;
    *outside = 0;
    *runs_generator = 0;
    /* What the outermost frame was: a chain that ends (where threads start
     * at an entry frame) not at an entry frame, or in the frame of a
     * generator that does not run, was read while a frame left it (a
     * generator suspended, a frame returned): torn.  A running generator's
     * frame may end it: one resumed from C with no Python frame below. */
    int last_is_entry = 0, last_is_generator = 0, last_state = -1;
    /* what the frame walked before this one was to it */
    enum li_place called = LI_INNERMOST;
    /* whether the frame recorded before this one lies in the chunk's copy
     * and is no generator's: one called by a frame that does as well lies
     * where its caller's frame ends (read_heads() checks) */
    int last_in_chunk = 0;
    /* whether an entry frame lies between this frame and the one walked
     * before it (LI_CALLED_C) */
    int via_entry = 0;
    /* frames walked that began a C frame of their own (frame_is_entry) */
    size_t entries = 0;
    /* the bounds of the older chunk a frame outside the copy was last found
     * in (the next ones are most likely there too) */
    uint64_t chunk_range[2] = {0, 0};
    uint64_t last_frame = 0, innermost = frame;
    for (int depth = 0; frame != 0; depth++) {
        if (depth >= LI_MAX_DEPTH) {
            return LI_TORN;
        }
        const unsigned char *copy = copy_of(L, s, s->chunk_len, frame);
        int err = 0, copied = copy != NULL;
        if (copied) {
            memcpy(buf, copy, (size_t)L->frame_size);
        }
        else {
            err = li_read(t, frame, buf, (size_t)L->frame_size);
        }
        if (err) {
            return li_status_of(t, err);
        }
        uint64_t code = li_u64_at(buf, L->frame_code);
        uint64_t back = li_u64_at(buf, L->frame_back);
        int64_t offset;
        if (L->frame_kind == LI_FRAME_OBJECT) {
            offset = (int64_t)i32_at(buf, L->frame_lasti) * L->lasti_unit;
            *outside += !copied;
            last_is_generator = L->frame_gen >= 0 && li_u64_at(buf, L->frame_gen) != 0;
            last_is_entry = 0;
            last_state = L->gen_state_known ? (signed char)buf[L->gen_state] : -1;
        }
        else {
            int owner = L->frame_owner >= 0 ? buf[L->frame_owner] : -1;
            last_is_generator = L->owner_generator >= 0 && owner == L->owner_generator;
            last_is_entry = L->owner_cstack >= 0 && owner == L->owner_cstack;
            /* An entry frame (3.13 keeps them on the C stack, outside the
             * chunk) does not change while the frames above it, which the
             * copy holds, exist: it needs no check of its own. */
            *outside += !copied && !last_is_entry;
            if (last_is_entry) {
                /* An entry frame of the C stack, not Python code: the
                 * frame below it called C, which called the interpreter
                 * (its stacktop says nothing).  The innermost one only
                 * while the interpreter enters or leaves, or read through
                 * a C frame the thread has left (3.12: a C frame's
                 * current_frame is its entry frame once it returns, and
                 * the next call from C puts its own at the same address):
                 * torn. */
                if (called == LI_INNERMOST) {
                    return LI_TORN;
                }
                called = LI_CALLED_C;
                frame = back;
                continue;
            }
            /* A frame outside the copy must be a generator's or lie in one
             * of the thread's chunks (an older one, of a deep stack): not
             * on the C stack, where a C frame the thread left (3.12) or an
             * entry frame since reused by C code (its owner no longer
             * says so) may lead, nor in a generator's memory freed and
             * made another's, whose frame has neither the generator's
             * owner nor a previous frame yet (3.11: the generator alone). */
            if (!copied && !last_is_generator
                && !(frame >= chunk_range[0] && frame < chunk_range[1])) {
                int found;
                li_status st = in_a_chunk(t, tv[6], frame, &found, chunk_range);
                if (st != LI_OK || !found) {
                    return st != LI_OK ? st : LI_TORN;
                }
            }
            offset = offset_in_code(L, buf);
            li_status st = in_its_call(t, buf, offset, called);
            if (st != LI_OK) {
                return st;
            }
            via_entry = called == LI_CALLED_C;
            entries += L->frame_is_entry >= 0 && buf[L->frame_is_entry] != 0;
            called = last_is_generator ? LI_CALLED_GENERATOR : LI_CALLED_PYTHON;
        }
        /* A thread list that a torn read made loop would walk real stacks
           again and again. */
        if (code == 0 || s->nframes >= LI_MAX_FRAMES_PER_SAMPLE) {
            return LI_TORN;
        }
        if (grow((void **)&s->frames, &s->frames_cap, s->nframes + 1, sizeof *s->frames)) {
            return LI_NO_MEMORY;
        }
        int in_chunk = copied && copy != s->outside && !last_is_generator;
        if (*count && last_in_chunk && in_chunk && L->code_framesize >= 0) {
            s->frames[s->nframes - 1].at_callers_end = via_entry ? 2 : 1;
        }
        last_in_chunk = in_chunk;
        li_raw_frame *f = &s->frames[s->nframes];
        f->addr = frame;
        f->code = code;
        f->offset = offset;
        f->at_callers_end = 0;
        f->shim = t->init_cleanup && code == t->init_cleanup;
        s->nframes++;
        (*count)++;
        last_frame = frame;
        frame = back;
    }
    if (L->chain_ends_at_entry && *count && !last_is_entry) {
        return LI_TORN;
    }
    if (last_is_generator) {
        if (!L->gen_state_known) {
            return LI_TORN;
        }
        /* deeper than the frames walked allow (RECURSION_SLACK) */
        int deep = L->tstate_recursion_depth >= 0
                   && (uint64_t)(int32_t)tv[7] > *count + RECURSION_SLACK;
        if (L->cframe_previous >= 0) {
            int first;
            size_t links = L->cframes_per_frame ? *count : entries ? entries : 1;
            li_status st = runs_in_first_cframe(t, tstate, tv[5], links, &first);
            if (st != LI_OK) {
                return st;
            }
            if (!first) {
                return LI_TORN;
            }
        }
        if (L->frame_kind == LI_INTERPRETER_FRAME) {
            /* (Kept in the generator object, around its frame.) */
            signed char state;
            int err = li_read(t, last_frame + (uint64_t)L->gen_state, &state, 1);
            if (err) {
                return li_status_of(t, err);
            }
            last_state = state;
            (*outside)++;
        }
        else {
            /* The frame object was copied a cache line at a time while the
             * thread ran: its f_back, cleared whenever the generator
             * suspends, may have been copied then, and its state, set
             * when it resumes, after the next resumption (genobject.c
             * links the frame to its caller in between, which the copy
             * missed).  The generator's frame ends the chain if a second
             * copy finds it the same: running, linked to nothing, and (3.9)
             * the thread, read after it, still in its innermost frame and
             * no deeper than its frames allow (or, deeper, DEEP_COPIES
             * copies find all that and the same depth). */
            uint64_t now[2] = {0, 0};
            struct iovec local[3] = {{buf, (size_t)L->frame_size},
                                     {&now[0], sizeof now[0]}, {&now[1], sizeof(int32_t)}};
            struct iovec remote[3] = {
                {(void *)(uintptr_t)last_frame, (size_t)L->frame_size},
                {(void *)(uintptr_t)(tstate + (uint64_t)L->tstate_frame), sizeof now[0]},
                {(void *)(uintptr_t)(tstate + (uint64_t)L->tstate_recursion_depth),
                 sizeof(int32_t)}};
            unsigned long n = L->tstate_recursion_depth >= 0 ? 3 : 1;
            size_t want = (size_t)L->frame_size + (n == 3 ? sizeof now[0] + sizeof(int32_t) : 0);
            for (int copies = deep ? DEEP_COPIES : 1; copies > 0; copies--) {
                ssize_t got = process_vm_readv(t->pid, local, n, remote, n, 0);
                if (got < 0) {
                    return li_status_of(t, errno);
                }
                uint64_t depth = (uint64_t)(int32_t)now[1];
                if ((size_t)got != want || li_u64_at(buf, L->frame_back) != 0
                    || li_u64_at(buf, L->frame_gen) == 0
                    || (signed char)buf[L->gen_state] != L->gen_executing
                    || (n == 3 && (now[0] != innermost
                                   || (deep ? depth != (uint64_t)(int32_t)tv[7]
                                            : depth > *count + RECURSION_SLACK)))) {
                    return LI_TORN;
                }
            }
            last_state = (signed char)buf[L->gen_state];
        }
        if (last_state != L->gen_executing) {
            return LI_TORN;
        }
        *runs_generator = 1;
    }
    return LI_OK;
}

/* LI_OK if the frame at `end`, where the frame of `caller` ends, is one
 * that returned to `caller` and is being cleared, and `callee` lies where
 * it ends, else LI_TORN: a frame called from C (through an entry frame)
 * while a returning frame is cleared (a local's __del__, a weakref's
 * callback: the interpreter unlinks the frame, clears its locals, then
 * pops it) is pushed above the returning frame and linked to its caller.
 * The returning frame, read now, must name `caller` as its previous (or
 * an entry frame that does, if C called it), not be a generator's or an
 * entry frame, and be at a plain return: one in a
 * call (a callback, whose frame a torn read may show under the frame's
 * caller) is at the call or at an instrumented instruction.  (A frame
 * cleared while an exception unwinds it is at any instruction: torn.) */
static li_status
returning_between(li_target *t, uint64_t caller, uint64_t end, uint64_t callee)
{
    const li_layout *L = &t->layout;
    unsigned char frame[LI_MAX_FRAME_SIZE];
    if (L->op_return_value < 0 || (size_t)L->frame_size > sizeof frame) {
        return LI_TORN;
    }
    int err = li_read(t, end, frame, (size_t)L->frame_size);
    if (err) {
        return li_status_of(t, err);
    }
    int owner = L->frame_owner >= 0 ? frame[L->frame_owner] : -1;
    uint64_t back = li_u64_at(frame, L->frame_back);
    if (owner == L->owner_cstack || owner == L->owner_generator) {
        return LI_TORN;
    }
    if (back != caller) {
        /* The returning frame was called from C: its previous is the entry
         * frame of that call, whose previous is the caller. */
        unsigned char entry[LI_MAX_FRAME_SIZE];
        err = li_read(t, back, entry, (size_t)L->frame_size);
        if (err) {
            return li_status_of(t, err);
        }
        if (L->frame_owner < 0 || entry[L->frame_owner] != L->owner_cstack
            || li_u64_at(entry, L->frame_back) != caller) {
            return LI_TORN;
        }
    }
    uint64_t code = li_u64_at(frame, L->frame_code), type = 0;
    int32_t words = 0;
    unsigned char op = 0;
    struct iovec local[3] = {{&words, sizeof words}, {&type, sizeof type}, {&op, 1}};
    struct iovec remote[3] = {
        {(void *)(uintptr_t)(code + (uint64_t)L->code_framesize), sizeof words},
        {(void *)(uintptr_t)(code + (uint64_t)L->object_type), sizeof type},
        {(void *)(uintptr_t)li_u64_at(frame, L->frame_instr), 1}};
    ssize_t got = process_vm_readv(t->pid, local, 3, remote, 3, 0);
    if (got < 0) {
        return li_status_of(t, errno);
    }
    if ((size_t)got != sizeof words + sizeof type + 1 || (t->code_type && type != t->code_type)
        || words <= 0 || callee != end + (uint64_t)words * sizeof(uint64_t)
        || (op != L->op_return_value && op != L->op_return_const)) {
        return LI_TORN;
    }
    return LI_OK;
}

#define HEADS_AT_ONCE 512

/* The hashes of the names of the code objects of frames start to end
 * (their heads read), in one system call.  A code object's name is
 * interned when it is made, so its hash is set. */
static li_status
read_name_hashes(li_target *t, li_sample *s, size_t start, size_t end)
{
    const li_layout *L = &t->layout;
    struct iovec local[HEADS_AT_ONCE], remote[HEADS_AT_ONCE];
    unsigned long k = 0;
    for (size_t i = start; i < end; i++) {
        if (i > start && s->frames[i].code == s->frames[i - 1].code) {
            continue;
        }
        local[k].iov_base = &s->frames[i].name_hash;
        local[k].iov_len = sizeof s->frames[i].name_hash;
        remote[k].iov_base = (void *)(uintptr_t)(li_u64_at(s->frames[i].head, L->code_name)
                                                 + (uint64_t)L->unicode_hash);
        remote[k].iov_len = sizeof s->frames[i].name_hash;
        k++;
    }
    ssize_t got = process_vm_readv(t->pid, local, k, remote, k, 0);
    if (got < 0) {
        return li_status_of(t, errno);
    }
    if ((size_t)got != k * sizeof(uint64_t)) {
        return LI_TORN;
    }
    for (size_t i = start + 1; i < end; i++) {
        if (s->frames[i].code == s->frames[i - 1].code) {
            s->frames[i].name_hash = s->frames[i - 1].name_hash;
        }
    }
    return LI_OK;
}

/* The heads of the code objects of the sample's frames, read in one system
 * call for up to HEADS_AT_ONCE frames (a frame whose code is its
 * caller's, as in recursion, is copied from it), and checked: each is a
 * code object, and each frame's position lies in its bytecode.  A head is
 * read with every sample rather than remembered by address: a code object
 * may be freed and another made at its address. */
static li_status
read_heads(li_target *t, li_sample *s)
{
    const li_layout *L = &t->layout;
    struct iovec local[HEADS_AT_ONCE], remote[HEADS_AT_ONCE];
    size_t len = (size_t)L->code_size;
    for (size_t start = 0; start < s->nframes; start += HEADS_AT_ONCE) {
        size_t end = start + HEADS_AT_ONCE < s->nframes ? start + HEADS_AT_ONCE : s->nframes;
        unsigned long k = 0;
        for (size_t i = start; i < end; i++) {
            if (i > start && s->frames[i].code == s->frames[i - 1].code) {
                continue;
            }
            local[k].iov_base = s->frames[i].head;
            local[k].iov_len = len;
            remote[k].iov_base = (void *)(uintptr_t)s->frames[i].code;
            remote[k].iov_len = len;
            k++;
        }
        ssize_t got = process_vm_readv(t->pid, local, k, remote, k, 0);
        if (got < 0) {
            return li_status_of(t, errno);
        }
        if ((size_t)got != k * len) {
            return LI_TORN;
        }
        for (size_t i = start; i < end; i++) {
            li_raw_frame *f = &s->frames[i];
            f->name_hash = 0;
            if (i > start && f->code == s->frames[i - 1].code) {
                memcpy(f->head, s->frames[i - 1].head, len);
            }
            if (t->code_type && li_u64_at(f->head, L->object_type) != t->code_type) {
                return LI_TORN;
            }
            /* A position outside the bytecode pairs one frame's code object
             * with another's position: torn.  (-1 unit: not started.) */
            if (L->code_units >= 0) {
                /* (ob_size is the target's: a torn one may be anything, so
                 * it is bounded before it is scaled, lest the product
                 * overflow.  No code object holds 2**40 units.) */
                int64_t units = (int64_t)li_u64_at(f->head, L->code_units);
                if (units < 0 || units > ((int64_t)1 << 40) || f->offset < -(int64_t)L->lasti_unit
                    || f->offset >= units * (int64_t)L->lasti_unit) {
                    return LI_TORN;
                }
            }
        }
        if (L->code_version < 0) {
            li_status st = read_name_hashes(t, s, start, end);
            if (st != LI_OK) {
                return st;
            }
        }
    }
    /* A frame pushed for a call lies where its caller's frame ends
     * (co_framesize words from its start: the interpreter pushes frames on
     * top of the chunk, whether the caller called it or called C that did),
     * unless one of them is a generator's or the chunk was full.  A chain
     * that passes an entry frame in between takes the entry frame's
     * previous as it is when read on its own, which a later call from C at
     * the same C stack address has set to another frame: a callback's
     * frame over the frame that called another callback (a traced target),
     * or the callback over itself. */
    for (size_t i = 0; i + 1 < s->nframes; i++) {
        const li_raw_frame *callee = &s->frames[i], *caller = &s->frames[i + 1];
        if (!callee->at_callers_end) {
            continue;
        }
        uint64_t end = caller->addr
                       + (uint64_t)i32_at(caller->head, L->code_framesize) * sizeof(uint64_t);
        if (callee->addr != end) {
            li_status st = callee->at_callers_end == 2
                               ? returning_between(t, caller->addr, end, callee->addr)
                               : LI_TORN;
            if (st != LI_OK) {
                return st;
            }
        }
    }
    return LI_OK;
}

/* Leave the shim frames (li_raw_frame.shim) out of the sample once the
 * checks that need them (read_heads(): each frame where its caller's
 * ends) are done. */
static void
drop_shims(li_sample *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->nthreads; i++) {
        li_raw_thread *th = &s->threads[i];
        size_t first = kept;
        for (size_t j = th->first; j < th->first + th->count; j++) {
            if (!s->frames[j].shim) {
                if (kept != j) {
                    s->frames[kept] = s->frames[j];
                }
                kept++;
            }
        }
        th->first = first;
        th->count = kept - first;
    }
    s->nframes = kept;
}

li_status
li_take_sample(li_target *t, li_sample *s)
{
    const li_layout *L = &t->layout;
    s->nthreads = 0;
    s->nframes = 0;
    uint64_t interp = 0, gil_tstate = 0;
    int64_t runtime_fields[2] = {L->runtime_interpreters_head, L->runtime_gil_tstate_current};
    uint64_t runtime_values[2];
    int err = read_fields(t, t->runtime, runtime_fields, runtime_values, 2);
    if (err) {
        return li_status_of(t, err);
    }
    interp = runtime_values[0];
    gil_tstate = runtime_values[1];
    for (int ninterp = 0; interp != 0; ninterp++) {
        if (ninterp >= MAX_INTERPRETERS) {
            return LI_TORN;
        }
        int64_t interp_fields[4] = {L->interp_next, L->interp_threads_head,
                                    L->interp_gil_locked, L->interp_gil_holder};
        uint64_t iv[4];
        err = read_fields(t, interp, interp_fields, iv, 4);
        if (err) {
            return li_status_of(t, err);
        }
        int gil_known = L->runtime_gil_tstate_current >= 0 || L->interp_gil_locked >= 0;
        uint64_t holder = gil_tstate;
        if (L->interp_gil_locked >= 0) {
            holder = (iv[2] & 0xffffffffu) ? iv[3] : 0;
        }
        /* the walk of this interpreter's threads: from s->threads[first];
         * the last thread state reached and its prev */
        size_t first = s->nthreads;
        uint64_t tstate = iv[1], last = 0, last_prev = 0;
        for (int nthreads = 0; tstate != 0; nthreads++) {
            if (nthreads >= MAX_THREADS) {
                return LI_TORN;
            }
            int64_t ts_fields[MAX_FIELDS] = {L->tstate_next, L->tstate_interp,
                                             L->tstate_thread_id, L->tstate_native_thread_id,
                                             L->tstate_frame, L->tstate_cframe,
                                             L->tstate_datastack_chunk,
                                             L->tstate_recursion_depth, L->tstate_prev};
            uint64_t tv[MAX_FIELDS], frame = 0;
            struct li_thread_cache *tc = &t->thread_cache[(tstate >> 6) % 64];
            li_status st = s->threads_only ? LI_OK : LI_STALE;
            if (s->threads_only) {
                err = read_fields(t, tstate, ts_fields, tv, MAX_FIELDS);
                if (err) {
                    return li_status_of(t, err);
                }
            }
            else if (tc->tstate == tstate && tc->chunk && tc->chunk_size) {
                st = snapshot(t, s, tc, ts_fields, tv, &frame);
            }
            if (st == LI_STALE) {
                err = read_fields(t, tstate, ts_fields, tv, MAX_FIELDS);
                if (err == 0) {
                    err = top_frame(t, tstate, tv, &frame);
                }
                if (err) {
                    return li_status_of(t, err);
                }
                st = read_chunk(t, s, tv[6], frame);
                if (st == LI_OK && s->chunk_len) {
                    /* The copy holds a stack of the moment the innermost
                     * frame was read if the thread stayed on it. */
                    st = L->frame_stacktop < 0 ? still_at(t, tstate, ts_fields, frame, s)
                                               : still_same_calls(t, s, s->chunk_len, frame);
                }
                if (tc->tstate != tstate) {
                    tc->cframe2 = 0;
                }
                else if (tc->cframe != tv[5]) {
                    tc->cframe2 = tc->cframe;
                }
                tc->tstate = tstate;
                tc->cframe = tv[5];
                tc->chunk = tv[6];
                tc->chunk_size = s->chunk_size;
                tc->used = s->chunk_len;
                tc->outside = frame - tv[6] < s->chunk_size ? 0 : frame;
            }
            if (st != LI_OK) {
                return st;
            }
            if (tv[1] != interp || !li_thread_linked(s, first, tv[8])) {
                return LI_TORN;
            }
            if (grow((void **)&s->threads, &s->threads_cap, s->nthreads + 1,
                     sizeof *s->threads)) {
                return LI_NO_MEMORY;
            }
            li_raw_thread *th = &s->threads[s->nthreads];
            th->tstate = tstate;
            th->thread_id = tv[2];
            th->interp = interp;
            /* (Before 3.11, from the thread's struct pthread once the
             * walk is done: tids_from_pthreads.) */
            th->native_id = L->tstate_native_thread_id >= 0 ? tv[3] : 0;
            th->holds_gil = gil_known ? holder == tstate : -1;
            th->first = s->nframes;
            th->count = 0;
            th->runs_generator = 0;
            size_t outside = 0;
            if (!s->threads_only) {
                st = walk_frames(t, s, frame, tstate, tv, &th->count, &outside,
                                 &th->runs_generator);
            }
            if (st == LI_OK && outside) {
                st = stayed_on(t, s, th->first, th->count, tstate, ts_fields, frame);
            }
            if (st != LI_OK) {
                return st;
            }
            s->nthreads++;
            last = tstate;
            last_prev = tv[8];
            tstate = tv[0];
        }
        if (last) {
            li_status st = li_thread_list_ends(t, interp, last_prev, last);
            if (st != LI_OK) {
                return st;
            }
        }
        interp = iv[0];
    }
    if (L->tstate_native_thread_id < 0) {
        tids_from_pthreads(t, s);
    }
    li_status st = read_heads(t, s);
    if (st != LI_OK) {
        return st;
    }
    drop_shims(s);
    if (L->code_flags < 0) {
        return LI_OK;
    }
    /* A generator's frame object outlives the generator as its code
     * object's spare frame, f_back and f_gen cleared, and is the next
     * generator's frame: one read after its generator finished looks like
     * a thread's outermost frame, and the thread may be in the next
     * generator, at the same address, by the time the walk is checked
     * (stayed_on()).  A thread's outermost frame of generator code is
     * kept only if it was a generator's that ran. */
    for (size_t i = 0; i < s->nthreads; i++) {
        const li_raw_thread *th = &s->threads[i];
        if (th->count && !th->runs_generator
            && (i32_at(s->frames[th->first + th->count - 1].head, L->code_flags)
                & L->generator_flags)) {
            return LI_TORN;
        }
    }
    return LI_OK;
}

void
li_sample_free(li_sample *s)
{
    free(s->threads);
    free(s->frames);
    free(s->chunk);
    free(s->again);
    memset(s, 0, sizeof *s);
}
