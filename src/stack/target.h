/* A Python process seen from outside: its memory, where its runtime state
 * is, which CPython it runs, and the walk of its threads and frames.  Plain
 * C (no Python API), Linux only; module.c is the Python glue. */
#ifndef LI_STACK_TARGET_H
#define LI_STACK_TARGET_H

#define LI_PATH_MAX 4096
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "layout.h"

typedef enum li_status {
    LI_OK = 0,
    LI_NO_PROCESS,      /* no such process */
    LI_NO_PERMISSION,   /* may not read its memory or its maps */
    LI_NOT_PYTHON,      /* no CPython runtime found in it */
    LI_UNSUPPORTED,     /* a CPython this reader has no layout for */
    LI_TORN,            /* the target changed the stack while it was read */
    LI_OS_ERROR,        /* another system error (errno kept) */
    LI_NO_MEMORY,
} li_status;

typedef struct li_target {
    pid_t pid;
    uint64_t runtime;           /* address of _PyRuntime */
    uint64_t code_type;         /* address of PyCode_Type, 0 if unknown */
    /* PyDict_Type, PyUnicode_Type, PyModule_Type (0 if unknown): what the
     * objects on the way to a thread's name must be */
    uint64_t dict_type, str_type, module_type;
    /* PyLong_Type (0 if unknown): what a Thread's _native_id must be */
    uint64_t long_type;
    /* 3.13: the code object of the shim frames below __init__'s frames
     * (_Py_InitCleanup), from the ELF symbols or learnt from a frame at its
     * EXIT_INIT_CHECK (walk.c); 0 until known */
    uint64_t init_cleanup;
    int major, minor, micro;    /* micro is -1 where it cannot be told */
    li_layout layout;
    char binary[LI_PATH_MAX];      /* the file that holds _PyRuntime */
    /* where struct pthread keeps the kernel's tid (versions whose thread
     * state has no native_thread_id): glibc's own description, else learnt
     * from the threads (walk.c); -1 not known yet, -2 given up on */
    int pthread_tid_offset;
    /* samples it was learnt from or looked for in (0: it came from glibc) */
    int pthread_tid_tries;
    int last_errno;
    /* Per thread state (direct mapped): where its stack chunk (and, where
     * the innermost frame is reached through one, its C frame) was last
     * seen, so that the next sample reads the thread state, the chunk and
     * the innermost frame again in one system call (li_take_sample). */
    struct li_thread_cache {
        uint64_t tstate, cframe, chunk, chunk_size, used;
        /* the C frame before cframe (3.11, 3.12: a generator resumed from
         * C runs in a C frame of its own, which a loop enters and leaves) */
        uint64_t cframe2;
        /* the innermost frame when it was last outside the chunk (a
         * generator's, which a loop over it enters and leaves all the
         * time): read in the same system call too */
        uint64_t outside;
    } thread_cache[64];
} li_target;

/* The 8 bytes at buf + at, a copy of the target's memory. */
static inline uint64_t
li_u64_at(const unsigned char *buf, int64_t at)
{
    uint64_t v;
    memcpy(&v, buf + at, sizeof v);
    return v;
}

/* Read n bytes at addr of the target; 0, or an errno value. */
int li_read(const li_target *t, uint64_t addr, void *buf, size_t n);

/* The status of a failed read (errno err, kept in t->last_errno): the
 * process is gone, reading it is refused, or (EFAULT) a pointer led nowhere
 * because the target moved on: LI_TORN. */
li_status li_status_of(li_target *t, int err);

/* Find the runtime and version of process pid.  On failure, msg says why. */
li_status li_attach(li_target *t, pid_t pid, char *msg, size_t msg_size);

typedef struct li_raw_frame {
    uint64_t addr;          /* address of the frame */
    uint64_t code;          /* address of the code object */
    int64_t offset;         /* byte offset of the instruction, negative: not started */
    unsigned char head[LI_MAX_CODE_HEAD];/* the code object's head, as read */
    /* the hash of its co_name, where code objects have no version (3.9-3.11):
     * with its address, what tells a code object from another made where a
     * freed one was */
    uint64_t name_hash;
    /* it and its caller (the next frame) lie in the chunk's copy, neither
     * a generator's: it must start where its caller's frame ends (3.12+),
     * 1; 2 if an entry frame lies between them, where it may also start
     * where a frame returning to the caller ends (walk.c,
     * returning_between()); else 0 */
    int at_callers_end;
    /* the interpreter's shim frame below a class's __init__ (3.13), no
     * Python code: checked as a frame, left out of the sample */
    int shim;
} li_raw_frame;

typedef struct li_raw_thread {
    uint64_t tstate;
    uint64_t thread_id;         /* threading.get_ident() */
    uint64_t native_id;         /* the kernel's tid, 0 if unknown */
    uint64_t interp;            /* its interpreter state */
    int holds_gil;              /* 1, 0, or -1 where the version does not tell */
    size_t first, count;        /* its frames in the sample, innermost first */
    /* its outermost frame is a generator's (or coroutine's) that runs */
    int runs_generator;
} li_raw_thread;

typedef struct li_sample {
    li_raw_thread *threads;
    size_t nthreads, threads_cap;
    li_raw_frame *frames;
    size_t nframes, frames_cap;
    /* a copy of the thread's current stack chunk up to its innermost frame,
     * read in one go: the frames in it need no read of their own */
    unsigned char *chunk;
    size_t chunk_len, chunk_cap;
    uint64_t chunk_start, chunk_size;
    /* a copy of one frame outside the chunk (at outside_addr, 0 if none),
     * read with it */
    unsigned char outside[LI_MAX_FRAME_SIZE];
    uint64_t outside_addr;
    /* the innermost frames read again after the copy (walk.c) */
    unsigned char *again;
    size_t again_cap;
    /* set by the caller: read the threads alone, none of their frames
     * (thread_names(), which needs no stack: a thread whose stack is torn
     * in every read, as one waiting for the GIL can be for milliseconds,
     * would cost every thread its name) */
    int threads_only;
} li_sample;

/* Most frames read in one thread: deeper stacks are cut (counted as torn,
 * since a cycle from a torn read looks the same). */
#define LI_MAX_DEPTH 4096
#define LI_MAX_FRAMES_PER_SAMPLE (1 << 20)

/* One snapshot of every thread's stack into *s (reused across calls), with
 * the head of each frame's code object as it is at the end of the snapshot.
 * LI_TORN if the target moved under the reader: the sample is inconsistent
 * and is to be dropped. */
li_status li_take_sample(li_target *t, li_sample *s);
void li_sample_free(li_sample *s);

/* The checks of a walk of an interpreter's thread states (threadlist.c):
 * whether the thread state the walk reached next, whose prev is `prev`,
 * holds together with the walk so far (s->threads from `first`), 1 if so;
 * and LI_OK if `last`, where the walk ended (its next was 0), still ends
 * the list as it did: linked from `prev` (its prev; 0: from the head of
 * interpreter `interp`) and with no next, LI_TORN if not. */
int li_thread_linked(const li_sample *s, size_t first, uint64_t prev);
li_status li_thread_list_ends(li_target *t, uint64_t interp, uint64_t prev, uint64_t last);

/* What li_thread_names found for one thread. */
typedef enum li_name_state {
    /* threading is not imported, has no Thread under the thread's ident,
     * or that Thread has no str _name */
    LI_NAME_NONE = 0,
    LI_NAME_FOUND,      /* names[i] is its Thread's _name, threads[i] the Thread */
    /* the Thread under its ident is not of the kernel's thread natives[i]:
     * its _native_id differs or is not set (glibc gives a new thread an
     * exited one's pthread_t at once, which is threading's ident), or
     * natives[i] is 0 (the tid is not known) */
    LI_NAME_OTHER,
    LI_NAME_TORN,       /* reading its Thread raced with the target */
} li_name_state;

/* The names threading.Thread objects give n threads of interpreter interp,
 * by their threading ident and kernel tid: states[i] says what was found
 * for the thread (idents[i], natives[i]); where it is LI_NAME_FOUND,
 * names[i] is the address of the Thread's _name (a str) and threads[i]
 * that of the Thread, both 0 otherwise.  A read of one thread's Thread
 * that races with the target makes only that thread LI_NAME_TORN; LI_TORN
 * is returned where what all threads share (sys.modules, threading,
 * _active) does not hold together. */
li_status li_thread_names(li_target *t, uint64_t interp, const uint64_t *idents,
                          const uint64_t *natives, uint64_t *threads, uint64_t *names,
                          li_name_state *states, size_t n);

/* Whether the Thread at `thread` (threads[i] of li_thread_names) is still
 * the kernel's thread native's and still named by the str at name: *holds
 * 1 if so.  The name's text is to be read between li_thread_names and
 * this, since the str is freed with its Thread and another str may be made
 * where it was (the text would then be another thread's name). */
li_status li_thread_still_named(li_target *t, uint64_t thread, uint64_t native, uint64_t name,
                                int *holds);

/* The line of a byte offset, from a line table in the layout's format;
 * firstlineno where the offset is before the first instruction, -1 where
 * the instruction has no line. */
int li_line_of(int format, const unsigned char *table, size_t size,
               int firstlineno, int64_t offset);

#endif
