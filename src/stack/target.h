/* A Python process seen from outside: its memory, where its runtime state
 * is, which CPython it runs, and the walk of its threads and frames.  Plain
 * C (no Python API), Linux only; module.c is the Python glue. */
#ifndef LI_STACK_TARGET_H
#define LI_STACK_TARGET_H

#define LI_PATH_MAX 4096
#include <stddef.h>
#include <stdint.h>
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
    int major, minor, micro;    /* micro is -1 where it cannot be told */
    li_layout layout;
    char binary[LI_PATH_MAX];      /* the file that holds _PyRuntime */
    /* where struct pthread keeps the kernel's tid (versions whose thread
     * state has no native_thread_id): -1 not looked for yet, -2 not found */
    int pthread_tid_offset;
    int last_errno;
    /* Code objects already read and found to be code objects, by address
     * (direct mapped): with trust_known_code set, their heads are not read
     * again, which halves the reads of a sample.  A code object freed and
     * another made at its address would then go unnoticed until its entry
     * is replaced, a risk a sampler takes and a one-off reading does not. */
    int trust_known_code;
    uint64_t known_code[4096];
    /* Per thread state (direct mapped): where its stack chunk (and, where
     * the innermost frame is reached through one, its C frame) was last
     * seen, so that the next sample reads the thread state, the chunk and
     * the innermost frame again in one system call (li_take_sample). */
    struct li_thread_cache {
        uint64_t tstate, cframe, chunk, chunk_size, used;
    } thread_cache[64];
} li_target;

/* Read n bytes at addr of the target; 0, or an errno value. */
int li_read(const li_target *t, uint64_t addr, void *buf, size_t n);

/* Find the runtime and version of process pid.  On failure, msg says why. */
li_status li_attach(li_target *t, pid_t pid, char *msg, size_t msg_size);

typedef struct li_raw_frame {
    uint64_t code;          /* address of the code object */
    int64_t offset;         /* byte offset of the instruction, negative: not started */
    int have_head;          /* whether head was read (see li_target.known_code) */
    unsigned char head[LI_MAX_CODE_HEAD];/* the code object's head, as read */
} li_raw_frame;

typedef struct li_raw_thread {
    uint64_t tstate;
    uint64_t thread_id;         /* threading.get_ident() */
    uint64_t native_id;         /* the kernel's tid, 0 if unknown */
    int holds_gil;              /* 1, 0, or -1 where the version does not tell */
    size_t first, count;        /* its frames in the sample, innermost first */
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
} li_sample;

/* Most frames read in one thread: deeper stacks are cut (counted as torn,
 * since a cycle from a torn read looks the same). */
#define LI_MAX_DEPTH 4096
#define LI_MAX_FRAMES_PER_SAMPLE (1 << 20)

/* One snapshot of every thread's stack into *s (reused across calls).
 * LI_TORN if the target moved under the reader: the sample is inconsistent
 * and is to be dropped. */
li_status li_take_sample(li_target *t, li_sample *s);
void li_sample_free(li_sample *s);

/* The line of a byte offset, from a line table in the layout's format;
 * firstlineno where the offset is before the first instruction, -1 where
 * the instruction has no line. */
int li_line_of(int format, const unsigned char *table, size_t size,
               int firstlineno, int64_t offset);

#endif
