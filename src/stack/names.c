/* The names threading gives a process's threads, read from outside:
 * sys.modules["threading"]._active maps each thread's ident to its Thread,
 * whose _name is the name, if its _native_id is the thread's kernel tid.
 * Nothing is stopped while these objects are read, so each one's type is
 * checked where the reader knows the type's address, every size read is
 * bounded, a table must still be where it was once read, and anything that
 * does not hold together is LI_TORN (for one thread, or for all where it is
 * what they share; the caller reads again).  Dicts are searched entry by
 * entry (the hash of a str key is the target's, salted by its own seed),
 * int keys by the hash the entry keeps. */
#define _GNU_SOURCE
#include "target.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Larger dicts are not searched: sys.modules holds hundreds to thousands of
 * entries, threading._active one per thread. */
#define MAX_ENTRIES (1 << 16)
/* iovecs per process_vm_readv (the kernel takes up to IOV_MAX, 1024) */
#define BATCH 256

typedef struct entry {
    uint64_t hash, key, value;
} entry;

/* The live entries of a dict (or of an instance's shared keys and values). */
typedef struct table {
    entry *entries;
    size_t n;
    int has_hash;       /* entries keep their keys' hashes (not str-only keys) */
} table;

static li_status
read_u64(li_target *t, uint64_t addr, uint64_t *out)
{
    int err = li_read(t, addr, out, sizeof *out);
    return err ? li_status_of(t, err) : LI_OK;
}

/* LI_OK if the object at obj is of type `type` (or the reader does not know
 * that type's address), LI_TORN if it is of another. */
static li_status
check_type(li_target *t, uint64_t obj, uint64_t type)
{
    uint64_t actual;
    li_status st = read_u64(t, obj + (uint64_t)t->layout.object_type, &actual);
    if (st == LI_OK && type && actual != type) {
        st = LI_TORN;
    }
    return st;
}

/* The entries of a keys object and, for a split table, its values. */
static li_status
read_table(li_target *t, uint64_t keys, uint64_t values, table *out)
{
    const li_layout *L = &t->layout;
    unsigned char head[128];
    out->entries = NULL;
    out->n = 0;
    out->has_hash = 1;
    if (keys == 0 || L->keys_indices <= 0 || L->keys_indices > (int64_t)sizeof head) {
        return LI_TORN;
    }
    int err = li_read(t, keys, head, (size_t)L->keys_indices);
    if (err) {
        return li_status_of(t, err);
    }
    int64_t nentries = (int64_t)li_u64_at(head, L->keys_nentries);
    uint64_t size, indices_len;
    if (L->keys_format == LI_DICT_KEYS_SIZE) {
        size = li_u64_at(head, L->keys_size);
        if (size == 0 || size > 4 * (uint64_t)MAX_ENTRIES) {
            return LI_TORN;
        }
        /* Each index is as wide as the table's size needs. */
        indices_len = size * (size <= 0xff ? 1 : size <= 0xffff ? 2 : 4);
    }
    else {
        unsigned log2_size = head[L->keys_size], log2_index_bytes = head[L->keys_log2_index_bytes];
        if (log2_size > 20 || log2_index_bytes < log2_size || log2_index_bytes > log2_size + 3) {
            return LI_TORN;
        }
        size = (uint64_t)1 << log2_size;
        indices_len = (uint64_t)1 << log2_index_bytes;
        out->has_hash = head[L->keys_kind] == L->keys_kind_general;
    }
    if ((size & (size - 1)) != 0 || nentries < 0 || (uint64_t)nentries > size
        || nentries > MAX_ENTRIES) {
        return LI_TORN;
    }
    int64_t esize = out->has_hash ? L->entry_size : L->uentry_size;
    int64_t ekey = out->has_hash ? L->entry_key : L->uentry_key;
    int64_t evalue = out->has_hash ? L->entry_value : L->uentry_value;
    if (esize <= 0 || nentries == 0) {
        return esize <= 0 ? LI_TORN : LI_OK;
    }
    size_t n = (size_t)nentries;
    unsigned char *raw = malloc(n * (size_t)esize);
    uint64_t *vals = values ? malloc(n * sizeof *vals) : NULL;
    out->entries = malloc(n * sizeof *out->entries);
    li_status st = LI_NO_MEMORY;
    if (raw == NULL || (values && vals == NULL) || out->entries == NULL) {
        goto done;
    }
    err = li_read(t, keys + (uint64_t)L->keys_indices + indices_len, raw, n * (size_t)esize);
    if (err == 0 && values) {
        err = li_read(t, values + (uint64_t)L->values_items, vals, n * sizeof *vals);
    }
    if (err) {
        st = li_status_of(t, err);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *e = raw + i * (size_t)esize;
        entry *o = &out->entries[i];
        o->hash = out->has_hash ? li_u64_at(e, L->entry_hash) : 0;
        o->key = li_u64_at(e, ekey);
        o->value = values ? vals[i] : li_u64_at(e, evalue);
    }
    out->n = n;
    st = LI_OK;
done:
    free(raw);
    free(vals);
    if (st != LI_OK) {
        free(out->entries);
        out->entries = NULL;
    }
    return st;
}

/* The keys object and values array a dict points to. */
static li_status
dict_head(li_target *t, uint64_t dict, uint64_t *keys, uint64_t *values)
{
    const li_layout *L = &t->layout;
    *keys = *values = 0;
    li_status st = read_u64(t, dict + (uint64_t)L->dict_keys, keys);
    if (st == LI_OK) {
        st = read_u64(t, dict + (uint64_t)L->dict_values, values);
    }
    return st;
}

/* st of the second read of where a table was read from (whether it moved
 * since: `moved`), LI_TORN if it moved; out's entries are dropped unless
 * LI_OK. */
static li_status
unless_moved(li_status st, int moved, table *out)
{
    if (st == LI_OK && moved) {
        st = LI_TORN;
    }
    if (st != LI_OK) {
        free(out->entries);
        out->entries = NULL;
        out->n = 0;
    }
    return st;
}

/* The entries of a dict.  A dict that grows, or is compacted after
 * deletions, moves its entries to a new keys object and frees the old one,
 * whose memory is soon another object's: entries read from it would be
 * garbage that looks like a dict without the keys looked for (threading's
 * _active does this all the time while threads start and end, and every
 * thread lost its name in such a read).  The dict must still point to the
 * same keys and values once they are read, else the read is torn.  That
 * alone misses two cases, which the dict's version tag and its number of
 * items, read before the table, catch: a resize points the dict to its new
 * keys before it fills them (a read then finds a table with no entries,
 * or some), and the allocator gives a resize the block the previous one
 * freed, so a dict that keeps resizing goes back and forth between two
 * addresses (the table read may be an older one, or one being built).  A
 * mutation stores the new version tag last: unchanged, no mutation ended
 * between the two reads; and the live entries read must be as many as
 * the items the dict had. */
static li_status
dict_table(li_target *t, uint64_t dict, table *out)
{
    const li_layout *L = &t->layout;
    uint64_t keys, values, used = 0, version = 0, keys_after, values_after, version_after = 0;
    out->entries = NULL;
    out->n = 0;
    li_status st = check_type(t, dict, t->dict_type);
    if (st == LI_OK) {
        st = read_u64(t, dict + (uint64_t)L->dict_version, &version);
    }
    if (st == LI_OK) {
        st = read_u64(t, dict + (uint64_t)L->dict_used, &used);
    }
    if (st == LI_OK) {
        st = dict_head(t, dict, &keys, &values);
    }
    if (st == LI_OK) {
        st = read_table(t, keys, values, out);
    }
    if (st == LI_OK) {
        st = dict_head(t, dict, &keys_after, &values_after);
        if (st == LI_OK) {
            st = read_u64(t, dict + (uint64_t)L->dict_version, &version_after);
        }
        uint64_t live = 0;
        for (size_t i = 0; i < out->n; i++) {
            live += out->entries[i].key != 0 && out->entries[i].value != 0;
        }
        st = unless_moved(st,
                          keys_after != keys || values_after != values
                              || version_after != version || live != used,
                          out);
    }
    return st;
}

/* Where an instance or a module keeps its attributes: its dict (*dict), or
 * the values of a managed dict that was never made (3.11+, *values) with
 * its class's shared keys (*keys); all 0 for an object with neither. */
static li_status
attribute_storage(li_target *t, uint64_t obj, uint64_t *dict, uint64_t *keys,
                  uint64_t *values)
{
    const li_layout *L = &t->layout;
    uint64_t type, flags, dictoffset;
    *dict = *keys = *values = 0;
    li_status st = read_u64(t, obj + (uint64_t)L->object_type, &type);
    if (st == LI_OK) {
        st = read_u64(t, type + (uint64_t)L->type_flags, &flags);
    }
    if (st == LI_OK) {
        st = read_u64(t, type + (uint64_t)L->type_dictoffset, &dictoffset);
    }
    if (st != LI_OK) {
        return st;
    }
    if (flags & L->tpflags_managed_dict) {
        uint64_t slot;
        st = read_u64(t, obj + (uint64_t)L->managed_dict, &slot);
        if (st != LI_OK) {
            return st;
        }
        switch (L->managed_values_kind) {
        case LI_VALUES_POINTER:
            if (slot) {
                *dict = slot;
            }
            else {
                st = read_u64(t, obj + (uint64_t)L->managed_values, values);
            }
            break;
        case LI_VALUES_TAGGED:
            if (slot & L->values_tag) {
                *values = slot + (uint64_t)L->values_untag;
            }
            else {
                *dict = slot;
            }
            break;
        case LI_VALUES_INLINE:
            if (slot) {
                *dict = slot;
            }
            else if (flags & L->tpflags_inline_values) {
                unsigned char valid;
                uint64_t at = obj + (uint64_t)L->managed_values;
                int err = li_read(t, at + (uint64_t)L->values_valid, &valid, 1);
                if (err) {
                    return li_status_of(t, err);
                }
                *values = valid ? at : 0;
            }
            break;
        default:
            return LI_UNSUPPORTED;
        }
        if (st == LI_OK && *values) {
            st = read_u64(t, type + (uint64_t)L->heaptype_cached_keys, keys);
        }
        return st;
    }
    if ((int64_t)dictoffset > 0 && dictoffset < 4096) {
        st = read_u64(t, obj + dictoffset, dict);
    }
    return st;
}

/* The attributes of an instance or a module (attribute_storage); an
 * object with none gives no entries.  As with dict_table, the object must
 * still keep them where they were read from (a managed dict made meanwhile
 * frees the values read), else the read is torn. */
static li_status
attributes(li_target *t, uint64_t obj, table *out)
{
    uint64_t dict, keys, values, dict_after, keys_after, values_after;
    out->entries = NULL;
    out->n = 0;
    li_status st = attribute_storage(t, obj, &dict, &keys, &values);
    if (st != LI_OK || dict) {
        return st == LI_OK ? dict_table(t, dict, out) : st;
    }
    if (keys == 0) {
        return LI_OK;
    }
    st = read_table(t, keys, values, out);
    if (st == LI_OK) {
        st = attribute_storage(t, obj, &dict_after, &keys_after, &values_after);
        st = unless_moved(st, dict_after || keys_after != keys || values_after != values,
                          out);
    }
    return st;
}

/* The value of the entry whose key is the str `name` (ASCII), 0 if none:
 * the keys' heads are read in batches, the text only of those of the
 * length wanted. */
static li_status
find_str(li_target *t, const table *tb, const char *name, uint64_t *value)
{
    const li_layout *L = &t->layout;
    size_t len = strlen(name), head = (size_t)L->unicode_ascii_size;
    *value = 0;
    unsigned char *heads = malloc(BATCH * head);
    if (heads == NULL) {
        return LI_NO_MEMORY;
    }
    li_status st = LI_OK;
    for (size_t start = 0; start < tb->n && *value == 0 && st == LI_OK; start += BATCH) {
        struct iovec local[BATCH], remote[BATCH];
        size_t which[BATCH], k = 0;
        for (size_t i = start; i < tb->n && i < start + BATCH; i++) {
            if (tb->entries[i].key && tb->entries[i].value) {
                local[k].iov_base = heads + k * head;
                local[k].iov_len = head;
                remote[k].iov_base = (void *)(uintptr_t)tb->entries[i].key;
                remote[k].iov_len = head;
                which[k++] = i;
            }
        }
        if (k == 0) {
            continue;
        }
        ssize_t got = process_vm_readv(t->pid, local, k, remote, k, 0);
        if (got < 0 && errno != EFAULT) {
            st = li_status_of(t, errno);
            break;
        }
        if (got != (ssize_t)(k * head)) {
            st = LI_TORN;
            break;
        }
        for (size_t j = 0; j < k && *value == 0; j++) {
            const unsigned char *h = heads + j * head;
            uint32_t state;
            memcpy(&state, h + L->unicode_state, sizeof state);
            if ((t->str_type && li_u64_at(h, L->object_type) != t->str_type)
                || li_u64_at(h, L->unicode_length) != len || !(state & L->unicode_compact_mask)
                || !(state & L->unicode_ascii_mask)) {
                continue;
            }
            char text[64];
            if (len > sizeof text) {
                continue;
            }
            int err = li_read(t, tb->entries[which[j]].key + head, text, len);
            if (err) {
                st = li_status_of(t, err);
                break;
            }
            if (memcmp(text, name, len) == 0) {
                *value = tb->entries[which[j]].value;
            }
        }
    }
    free(heads);
    return st;
}

/* The value of attribute `name` of obj (0 if it has none). */
static li_status
attribute(li_target *t, uint64_t obj, const char *name, uint64_t *value)
{
    table tb;
    li_status st = attributes(t, obj, &tb);
    *value = 0;
    if (st == LI_OK) {
        st = find_str(t, &tb, name, value);
    }
    free(tb.entries);
    return st;
}

/* The value of the int at obj into *value, if it is one from 0 to 2**60
 * (two digits: a kernel tid is below 2**32); *value is UINT64_MAX where obj
 * is no such int (None, another type, a negative or larger int). */
static li_status
small_int(li_target *t, uint64_t obj, uint64_t *value)
{
    const li_layout *L = &t->layout;
    unsigned char buf[64];
    *value = UINT64_MAX;
    if (L->long_digits <= 0 || L->long_size < 0 || L->long_digit_bits <= 0
        || L->long_digit_bits > 30 || L->long_digits + 8 > (int64_t)sizeof buf
        || L->long_size + 8 > L->long_digits || L->object_type < 0
        || L->object_type + 8 > L->long_digits) {
        return LI_OK;       /* a layout that cannot tell: no int */
    }
    /* The head, then as many digits as it says (two at most): an int is
     * allocated with the digits it has, and one at its end may end where
     * mapped memory does. */
    int err = li_read(t, obj, buf, (size_t)L->long_digits);
    if (err) {
        return li_status_of(t, err);
    }
    if (t->long_type && li_u64_at(buf, L->object_type) != t->long_type) {
        return LI_OK;       /* (None before the thread started, or not an int) */
    }
    uint64_t size = li_u64_at(buf, L->long_size), ndigits;
    if (L->long_format == LI_LONG_TAG) {
        if ((size & L->long_sign_mask) == L->long_sign_negative) {
            return LI_OK;
        }
        ndigits = size >> L->long_tag_shift;
    }
    else if (L->long_format == LI_LONG_SIZE) {
        if ((int64_t)size < 0) {
            return LI_OK;
        }
        ndigits = size;
    }
    else {
        return LI_OK;
    }
    if (ndigits > 2) {
        return LI_OK;
    }
    if (ndigits) {
        err = li_read(t, obj + (uint64_t)L->long_digits, buf + L->long_digits,
                      (size_t)ndigits * 4);
        if (err) {
            return li_status_of(t, err);
        }
    }
    uint64_t digit_max = ((uint64_t)1 << L->long_digit_bits) - 1, v = 0;
    for (uint64_t i = ndigits; i-- > 0;) {
        uint32_t digit;
        memcpy(&digit, buf + L->long_digits + 4 * (int64_t)i, sizeof digit);
        if (digit > digit_max) {
            return LI_OK;   /* torn, or not an int after all */
        }
        v = (v << L->long_digit_bits) | digit;
    }
    *value = v;
    return LI_OK;
}

/* Whether the Thread at `thread` is of the kernel's thread `native`: its
 * _native_id (set in the thread itself before it enters _active, and by
 * _MainThread and _DummyThread) is native.  A Thread without one, or with
 * None, is no one's: *same is 0. */
static li_status
is_of(li_target *t, uint64_t thread, uint64_t native, int *same)
{
    uint64_t obj, value = UINT64_MAX;
    *same = 0;
    li_status st = attribute(t, thread, "_native_id", &obj);
    if (st == LI_OK && obj) {
        st = small_int(t, obj, &value);
    }
    *same = st == LI_OK && native != 0 && value == native;
    return st;
}

li_status
li_thread_still_named(li_target *t, uint64_t thread, uint64_t native, uint64_t name, int *holds)
{
    uint64_t now = 0;
    int same = 0;
    *holds = 0;
    li_status st = is_of(t, thread, native, &same);
    if (st == LI_OK && same) {
        st = attribute(t, thread, "_name", &now);
    }
    *holds = st == LI_OK && same && now == name;
    return st;
}

li_status
li_thread_names(li_target *t, uint64_t interp, const uint64_t *idents, const uint64_t *natives,
                uint64_t *threads, uint64_t *names, li_name_state *states, size_t n)
{
    const li_layout *L = &t->layout;
    uint64_t modules, threading = 0, active = 0;
    table tb = {NULL, 0, 0};
    for (size_t i = 0; i < n; i++) {
        names[i] = threads[i] = 0;
        states[i] = LI_NAME_NONE;
    }
    li_status st = read_u64(t, interp + (uint64_t)L->interp_modules, &modules);
    if (st != LI_OK || modules == 0) {
        return st;
    }
    st = dict_table(t, modules, &tb);
    if (st == LI_OK) {
        st = find_str(t, &tb, "threading", &threading);
    }
    free(tb.entries);
    tb.entries = NULL;
    if (st != LI_OK || threading == 0) {
        return st;
    }
    /* (A program may put anything in sys.modules: not a module, no names;
     * but a process gone or refused is said so.) */
    if (t->module_type) {
        st = check_type(t, threading, t->module_type);
        if (st != LI_OK) {
            return st == LI_TORN ? LI_OK : st;
        }
    }
    st = attribute(t, threading, "_active", &active);
    if (st != LI_OK || active == 0) {
        return st;
    }
    st = dict_table(t, active, &tb);
    if (st != LI_OK || !tb.has_hash) {
        free(tb.entries);
        return st;
    }
    /* _active's keys are idents, ints from 0 to 2**64: an int's hash, which
     * the entry keeps, is its value modulo the hash modulus. */
    uint64_t modulus = L->hash_modulus ? L->hash_modulus : UINT64_MAX;
    for (size_t k = 0; k < tb.n; k++) {
        for (size_t i = 0; i < n; i++) {
            if (tb.entries[k].key && tb.entries[k].value && threads[i] == 0
                && tb.entries[k].hash == idents[i] % modulus) {
                threads[i] = tb.entries[k].value;
            }
        }
    }
    free(tb.entries);
    /* Each thread on its own from here: a read of one Thread that races
     * with the target makes that thread's state LI_NAME_TORN (the caller
     * reads it again), not the others'.
     * _active is keyed by pthread_t, which glibc hands to a new thread as
     * soon as one exits: the Thread found under a thread's ident may be of
     * a thread started since the thread state was read.  Its _native_id,
     * the kernel's tid (not reused for a long while), tells. */
    for (size_t i = 0; i < n; i++) {
        uint64_t thread = threads[i];
        int same = 0;
        threads[i] = 0;
        if (thread == 0) {
            continue;
        }
        st = is_of(t, thread, natives[i], &same);
        if (st == LI_OK && same) {
            st = attribute(t, thread, "_name", &names[i]);
        }
        /* A _name that is no str (a program's doing) names nothing. */
        if (st == LI_OK && same && names[i]
            && check_type(t, names[i], t->str_type) == LI_OK) {
            states[i] = LI_NAME_FOUND;
            threads[i] = thread;
            continue;
        }
        names[i] = 0;
        if (st == LI_TORN) {
            states[i] = LI_NAME_TORN;
        }
        else if (st != LI_OK) {
            break;      /* the process is gone, refused, out of memory */
        }
        else if (!same) {
            states[i] = LI_NAME_OTHER;
        }
        st = LI_OK;
    }
    if (st != LI_OK) {
        for (size_t i = 0; i < n; i++) {
            names[i] = threads[i] = 0;
            states[i] = LI_NAME_NONE;
        }
    }
    return st;
}
