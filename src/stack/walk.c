/* The walk of a target's interpreters, threads and frames, from the layout
 * alone.  Nothing stops the target: every pointer read may be stale by the
 * time it is followed, so each step is checked (a code object's type, the
 * depth) and each thread's innermost frame is read again after its walk;
 * any change makes the sample torn. */
#define _GNU_SOURCE
#include "target.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_INTERPRETERS 64
#define MAX_THREADS 4096

static uint64_t
u64_at(const unsigned char *buf, int64_t at)
{
    uint64_t v;
    memcpy(&v, buf + at, sizeof v);
    return v;
}

static int32_t
i32_at(const unsigned char *buf, int64_t at)
{
    int32_t v;
    memcpy(&v, buf + at, sizeof v);
    return v;
}

/* Several fields of one structure in one system call: fields[i] (an offset
 * into base, -1 for none) into out[i]; absent ones read as 0. */
static int
read_fields(const li_target *t, uint64_t base, const int64_t *fields, uint64_t *out, int n)
{
    struct iovec local[8], remote[8];
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

static li_status
status_of(li_target *t, int err)
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

/* The kernel's tid of a thread whose thread state knows only its pthread_t:
 * found in glibc's struct pthread, at an offset learnt once by looking for
 * one of the target's tids in it. */
static uint64_t
tid_from_pthread(li_target *t, uint64_t pthread)
{
    if (pthread == 0 || t->pthread_tid_offset == -2) {
        return 0;
    }
    if (t->pthread_tid_offset >= 0) {
        int32_t tid;
        if (li_read(t, pthread + (uint64_t)t->pthread_tid_offset, &tid, sizeof tid) != 0) {
            return 0;
        }
        return tid > 0 ? (uint64_t)tid : 0;
    }
    int32_t block[256];
    if (li_read(t, pthread, block, sizeof block) != 0) {
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)t->pid);
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }
    int best = -1;
    struct dirent *e;
    while (best < 0 && (e = readdir(dir)) != NULL) {
        int tid = atoi(e->d_name);
        if (tid <= 0) {
            continue;
        }
        /* Skip the first words (pointers to itself and the TCB header) where
         * a small value is unlikely to be a tid; glibc keeps it further on. */
        for (int i = 8; i < 256; i++) {
            if (block[i] == tid) {
                best = i;
                break;
            }
        }
    }
    closedir(dir);
    t->pthread_tid_offset = best < 0 ? -2 : best * 4;
    return best < 0 ? 0 : (uint64_t)block[best];
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
    if (chunk == 0 || frame < chunk + 16 || frame - chunk > (1u << 20)) {
        return LI_OK;
    }
    size_t len = (size_t)(frame - chunk) + (size_t)L->frame_size;
    if (grow((void **)&s->chunk, &s->chunk_cap, len, 1)) {
        return LI_NO_MEMORY;
    }
    int err = li_read(t, chunk, s->chunk, len);
    if (err) {
        return err == EFAULT ? LI_OK : status_of(t, err);
    }
    uint64_t size = u64_at(s->chunk, 8);     /* _PyStackChunk: previous, size */
    s->chunk_size = size;
    if (len <= size) {
        s->chunk_len = len;
        s->chunk_start = chunk;
    }
    return LI_OK;
}

#define LI_STALE 100   /* snapshot(): the cache no longer describes the thread */
#define MAX_FIELDS 7

/* The thread's fields, its stack chunk and its innermost frame read before
 * and after the chunk, all in one system call, from where the thread's
 * cache says they are.  LI_OK with tv, *frame and s->chunk filled (the
 * copy is consistent: the thread neither called nor returned while the
 * kernel copied it), LI_TORN, LI_STALE (read the slow way), or an error. */
static li_status
snapshot(li_target *t, li_sample *s, struct li_thread_cache *tc, const int64_t *ts_fields,
         uint64_t *tv, uint64_t *frame)
{
    const li_layout *L = &t->layout;
    struct iovec local[MAX_FIELDS + 4], remote[MAX_FIELDS + 4];
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
    uint64_t before = 0, after = 0, cframe_after = 0;
    if (via_cframe) {
        ADD(tc->cframe + (uint64_t)L->cframe_current_frame, &before, sizeof before);
    }
    size_t len = (size_t)(tc->used + 1024 < tc->chunk_size ? tc->used + 1024 : tc->chunk_size);
    if (grow((void **)&s->chunk, &s->chunk_cap, len, 1)) {
        return LI_NO_MEMORY;
    }
    ADD(tc->chunk, s->chunk, len);
    if (via_cframe) {
        ADD(tc->cframe + (uint64_t)L->cframe_current_frame, &after, sizeof after);
        ADD(tc->tstate + (uint64_t)L->tstate_cframe, &cframe_after, sizeof cframe_after);
    }
    else {
        ADD(tc->tstate + (uint64_t)L->tstate_frame, &after, sizeof after);
    }
#undef ADD
    ssize_t got = process_vm_readv(t->pid, local, (unsigned long)k, remote, (unsigned long)k, 0);
    if (got < 0 && errno != EFAULT) {
        return status_of(t, errno);
    }
    if (got != (ssize_t)total || tv[6] != tc->chunk || u64_at(s->chunk, 8) != tc->chunk_size
        || (via_cframe && (tv[5] != tc->cframe || cframe_after != tc->cframe))) {
        return LI_STALE;
    }
    if (!via_cframe) {
        before = tv[4];
    }
    if (before != after) {
        return LI_TORN;
    }
    *frame = before;
    s->chunk_start = tc->chunk;
    s->chunk_size = tc->chunk_size;
    if (before >= tc->chunk + 16 && before - tc->chunk + (uint64_t)L->frame_size <= len) {
        s->chunk_len = (size_t)(before - tc->chunk) + (size_t)L->frame_size;
        tc->used = s->chunk_len;
        return LI_OK;
    }
    if (before >= tc->chunk && before < tc->chunk + tc->chunk_size) {
        return LI_STALE;    /* deeper than the copy */
    }
    /* The innermost frame is elsewhere (a generator's): the frames below
     * it in the chunk are in the copy, the walk reads it on its own. */
    s->chunk_len = len;
    return LI_OK;
}

/* LI_OK if the thread's innermost frame is still `frame`, else LI_TORN. */
static li_status
still_at(li_target *t, uint64_t tstate, const int64_t *ts_fields, uint64_t frame)
{
    uint64_t again[MAX_FIELDS], frame_again;
    int err = read_fields(t, tstate, ts_fields, again, MAX_FIELDS);
    if (err == 0) {
        err = top_frame(t, tstate, again, &frame_again);
    }
    if (err) {
        return status_of(t, err);
    }
    return frame_again == frame ? LI_OK : LI_TORN;
}

/* The frames from `frame` outwards into s; *outside counts those read on
 * their own rather than from the chunk's copy. */
static li_status
walk_frames(li_target *t, li_sample *s, uint64_t frame, size_t *count, size_t *outside)
{
    const li_layout *L = &t->layout;
    unsigned char buf[LI_MAX_FRAME_SIZE];
    if ((size_t)L->frame_size > sizeof buf) {
        return LI_UNSUPPORTED;
    }
    *count = 0;
    *outside = 0;
    /* What the outermost frame was: a chain that ends in a generator's
     * frame, or (where threads start at an entry frame) not at an entry
     * frame, was read while a frame left it (a generator suspended, a
     * frame returned): torn. */
    int last_is_entry = 0, last_is_generator = 0;
    for (int depth = 0; frame != 0; depth++) {
        if (depth >= LI_MAX_DEPTH) {
            return LI_TORN;
        }
        /* (Written so that a torn address cannot wrap around.) */
        uint64_t size = (uint64_t)L->frame_size;
        int err = 0, copied = s->chunk_len >= size && frame >= s->chunk_start
                              && frame - s->chunk_start <= s->chunk_len - size;
        if (copied) {
            memcpy(buf, s->chunk + (frame - s->chunk_start), (size_t)L->frame_size);
        }
        else {
            err = li_read(t, frame, buf, (size_t)L->frame_size);
        }
        if (err) {
            return status_of(t, err);
        }
        uint64_t code = u64_at(buf, L->frame_code);
        uint64_t back = u64_at(buf, L->frame_back);
        int64_t offset;
        if (L->frame_kind == LI_FRAME_OBJECT) {
            offset = (int64_t)i32_at(buf, L->frame_lasti) * L->lasti_unit;
            *outside += !copied;
            last_is_generator = L->frame_gen >= 0 && u64_at(buf, L->frame_gen) != 0;
            last_is_entry = 0;
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
                /* An entry frame of the C stack, not Python code. */
                frame = back;
                continue;
            }
            uint64_t instr = u64_at(buf, L->frame_instr);
            offset = (int64_t)(instr - (code + (uint64_t)L->code_adaptive));
        }
        /* A thread list that a torn read made loop would walk real stacks
           again and again. */
        if (code == 0 || s->nframes >= LI_MAX_FRAMES_PER_SAMPLE) {
            return LI_TORN;
        }
        if (grow((void **)&s->frames, &s->frames_cap, s->nframes + 1, sizeof *s->frames)) {
            return LI_NO_MEMORY;
        }
        li_raw_frame *f = &s->frames[s->nframes];
        uint64_t *known = &t->known_code[(code >> 4) % (sizeof t->known_code
                                                        / sizeof t->known_code[0])];
        f->have_head = !(t->trust_known_code && *known == code);
        if (f->have_head) {
            err = li_read(t, code, f->head, (size_t)L->code_size);
            if (err) {
                return status_of(t, err);
            }
            if (t->code_type && u64_at(f->head, L->object_type) != t->code_type) {
                return LI_TORN;
            }
            *known = code;
        }
        f->code = code;
        f->offset = offset;
        s->nframes++;
        (*count)++;
        frame = back;
    }
    if (last_is_generator || (L->chain_ends_at_entry && *count && !last_is_entry)) {
        return LI_TORN;
    }
    return LI_OK;
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
        return status_of(t, err);
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
            return status_of(t, err);
        }
        int gil_known = L->runtime_gil_tstate_current >= 0 || L->interp_gil_locked >= 0;
        uint64_t holder = gil_tstate;
        if (L->interp_gil_locked >= 0) {
            holder = (iv[2] & 0xffffffffu) ? iv[3] : 0;
        }
        uint64_t tstate = iv[1];
        for (int nthreads = 0; tstate != 0; nthreads++) {
            if (nthreads >= MAX_THREADS) {
                return LI_TORN;
            }
            int64_t ts_fields[MAX_FIELDS] = {L->tstate_next, L->tstate_interp,
                                             L->tstate_thread_id, L->tstate_native_thread_id,
                                             L->tstate_frame, L->tstate_cframe,
                                             L->tstate_datastack_chunk};
            uint64_t tv[MAX_FIELDS], frame = 0;
            struct li_thread_cache *tc = &t->thread_cache[(tstate >> 6) % 64];
            li_status st = LI_STALE;
            if (tc->tstate == tstate && tc->chunk && tc->chunk_size) {
                st = snapshot(t, s, tc, ts_fields, tv, &frame);
            }
            if (st == LI_STALE) {
                err = read_fields(t, tstate, ts_fields, tv, MAX_FIELDS);
                if (err == 0) {
                    err = top_frame(t, tstate, tv, &frame);
                }
                if (err) {
                    return status_of(t, err);
                }
                st = read_chunk(t, s, tv[6], frame);
                if (st == LI_OK && s->chunk_len) {
                    /* The copy holds a consistent stack if the thread neither
                     * called nor returned while it was made. */
                    st = still_at(t, tstate, ts_fields, frame);
                }
                tc->tstate = tstate;
                tc->cframe = tv[5];
                tc->chunk = tv[6];
                tc->chunk_size = s->chunk_size;
                tc->used = s->chunk_len;
            }
            if (st != LI_OK) {
                return st;
            }
            if (tv[1] != interp) {
                return LI_TORN;
            }
            if (grow((void **)&s->threads, &s->threads_cap, s->nthreads + 1,
                     sizeof *s->threads)) {
                return LI_NO_MEMORY;
            }
            li_raw_thread *th = &s->threads[s->nthreads];
            th->tstate = tstate;
            th->thread_id = tv[2];
            th->native_id = L->tstate_native_thread_id >= 0 ? tv[3]
                                                            : tid_from_pthread(t, tv[2]);
            th->holds_gil = gil_known ? holder == tstate : -1;
            th->first = s->nframes;
            size_t outside;
            st = walk_frames(t, s, frame, &th->count, &outside);
            if (st == LI_OK && outside) {
                /* Frames read one by one (frame objects, generators' frames):
                 * consistent if the thread stayed in its innermost frame. */
                st = still_at(t, tstate, ts_fields, frame);
            }
            if (st != LI_OK) {
                return st;
            }
            s->nthreads++;
            tstate = tv[0];
        }
        interp = iv[0];
    }
    return LI_OK;
}

void
li_sample_free(li_sample *s)
{
    free(s->threads);
    free(s->frames);
    free(s->chunk);
    memset(s, 0, sizeof *s);
}
