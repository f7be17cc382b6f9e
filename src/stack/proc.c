/* Process access: memory reads, the maps, ELF symbols, version detection. */
#define _GNU_SOURCE
#include "target.h"

#include <ctype.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

int
li_read(const li_target *t, uint64_t addr, void *buf, size_t n)
{
    struct iovec local = {buf, n};
    struct iovec remote = {(void *)(uintptr_t)addr, n};
    ssize_t got = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
    if (got < 0) {
        return errno ? errno : EIO;
    }
    return (size_t)got == n ? 0 : EFAULT;
}

/* One file-backed mapping of the target (its first, at file offset 0). */
typedef struct mapped_file {
    uint64_t start;
    char path[LI_PATH_MAX];
} mapped_file;

static li_status
status_of_errno(int err)
{
    if (err == ESRCH || err == ENOENT) {
        return LI_NO_PROCESS;
    }
    if (err == EPERM || err == EACCES) {
        return LI_NO_PERMISSION;
    }
    return err == ENOMEM ? LI_NO_MEMORY : LI_OS_ERROR;
}

/* Whether a mapped file is one to look in: a CPython executable or library
 * (is_python), or the library that implements threads (is_threads_library). */
typedef int (*file_filter)(const char *path, const char *base, const char *exe);

static int
is_python(const char *path, const char *base, const char *exe)
{
    return strncmp(base, "libpython", 9) == 0 || strncmp(base, "python", 6) == 0
           || strcmp(path, exe) == 0;
}

/* glibc's libc (libc.so.6, or libc-2.X.so before 2.34 named it so in the
 * maps) and, before 2.34, its libpthread: where libthread_db's
 * descriptions of struct pthread are. */
static int
is_threads_library(const char *path, const char *base, const char *exe)
{
    (void)path;
    (void)exe;
    return strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-", 5) == 0
           || strncmp(base, "libpthread", 10) == 0;
}

/* The files mapped at offset 0 that `wanted` accepts; *n of them in files
 * (at most cap).  exe is the target's executable (/proc/PID/exe). */
static li_status
mapped_files(pid_t pid, file_filter wanted, const char *exe, mapped_file *files, size_t cap,
             size_t *n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "re");
    if (maps == NULL) {
        return status_of_errno(errno);
    }
    char line[LI_PATH_MAX + 128];
    *n = 0;
    while (fgets(line, sizeof line, maps) != NULL) {
        unsigned long long start, end, offset;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &offset,
                   &name_at) < 4 || name_at == 0 || line[name_at] != '/' || offset != 0) {
            continue;
        }
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        if (!wanted(name, strrchr(name, '/') + 1, exe)) {
            continue;
        }
        int seen = 0;
        for (size_t i = 0; i < *n; i++) {
            seen |= strcmp(files[i].path, name) == 0;
        }
        if (!seen && *n < cap) {
            files[*n].start = start;
            snprintf(files[*n].path, sizeof files[*n].path, "%s", name);
            (*n)++;
        }
    }
    fclose(maps);
    return LI_OK;
}

/* The files mapped at offset 0 whose name looks like CPython's executable
 * or library, libpython first; *n of them in files (at most cap). */
static li_status
python_files(pid_t pid, mapped_file *files, size_t cap, size_t *n, char *exe, size_t exe_size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t len = readlink(path, exe, exe_size - 1);
    exe[len > 0 ? len : 0] = '\0';
    li_status st = mapped_files(pid, is_python, exe, files, cap, n);
    if (st != LI_OK) {
        return st;
    }
    /* libpython first: an executable linked to it defines no runtime. */
    for (size_t i = 1; i < *n; i++) {
        const char *base = strrchr(files[i].path, '/') + 1;
        if (strncmp(base, "libpython", 9) == 0) {
            mapped_file lib = files[i];
            memmove(files + 1, files, i * sizeof files[0]);
            files[0] = lib;
        }
    }
    return LI_OK;
}

typedef struct elf_symbols {
    uint64_t runtime, py_version, code_type, dict_type, str_type, module_type, long_type;
    uint64_t init_cleanup;    /* a local symbol: in .symtab only, if not stripped */
    uint64_t pthread_tid;     /* glibc's _thread_db_pthread_tid */
    uint64_t load_vaddr;      /* p_vaddr of the segment at file offset 0 */
    int found_runtime;
} elf_symbols;

static int
in_file(size_t size, uint64_t offset, uint64_t length)
{
    return offset <= size && length <= size - offset;
}

/* Look the symbols up in an ELF64 image; 0, or -1 if it is not one. */
static int
elf_lookup(const unsigned char *image, size_t size, elf_symbols *out)
{
    memset(out, 0, sizeof *out);
    if (size < sizeof(Elf64_Ehdr) || memcmp(image, ELFMAG, SELFMAG) != 0
        || image[EI_CLASS] != ELFCLASS64) {
        return -1;
    }
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)image;
    if (!in_file(size, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr))
        || !in_file(size, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr))) {
        return -1;
    }
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(image + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) {
            out->load_vaddr = ph[i].p_vaddr;
            break;
        }
    }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(image + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM && sh[i].sh_type != SHT_SYMTAB) {
            continue;
        }
        if (sh[i].sh_link >= eh->e_shnum || sh[i].sh_entsize != sizeof(Elf64_Sym)
            || !in_file(size, sh[i].sh_offset, sh[i].sh_size)) {
            continue;
        }
        const Elf64_Shdr *strtab = &sh[sh[i].sh_link];
        if (!in_file(size, strtab->sh_offset, strtab->sh_size)) {
            continue;
        }
        const char *names = (const char *)image + strtab->sh_offset;
        const Elf64_Sym *syms = (const Elf64_Sym *)(image + sh[i].sh_offset);
        size_t count = sh[i].sh_size / sizeof(Elf64_Sym);
        for (size_t k = 0; k < count; k++) {
            if (syms[k].st_name >= strtab->sh_size || syms[k].st_shndx == SHN_UNDEF
                || syms[k].st_value == 0) {
                continue;
            }
            const char *name = names + syms[k].st_name;
            /* A string table need not end its last string. */
            if (memchr(name, 0, strtab->sh_size - syms[k].st_name) == NULL) {
                continue;
            }
            if (strcmp(name, "_PyRuntime") == 0) {
                out->runtime = syms[k].st_value;
                out->found_runtime = 1;
            }
            else if (strcmp(name, "Py_Version") == 0) {
                out->py_version = syms[k].st_value;
            }
            else if (strcmp(name, "PyCode_Type") == 0) {
                out->code_type = syms[k].st_value;
            }
            else if (strcmp(name, "PyDict_Type") == 0) {
                out->dict_type = syms[k].st_value;
            }
            else if (strcmp(name, "PyUnicode_Type") == 0) {
                out->str_type = syms[k].st_value;
            }
            else if (strcmp(name, "PyModule_Type") == 0) {
                out->module_type = syms[k].st_value;
            }
            else if (strcmp(name, "PyLong_Type") == 0) {
                out->long_type = syms[k].st_value;
            }
            else if (strcmp(name, "_Py_InitCleanup") == 0) {
                out->init_cleanup = syms[k].st_value;
            }
            else if (strcmp(name, "_thread_db_pthread_tid") == 0) {
                out->pthread_tid = syms[k].st_value;
            }
        }
    }
    return 0;
}

/* The version in a file name: python3.11, libpython3.9.so.1.0. */
static int
version_from_name(const char *path, int *major, int *minor)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *p = strstr(base, "python");
    if (p == NULL) {
        return -1;
    }
    p += 6;
    char *end;
    long ma = strtol(p, &end, 10);
    if (end == p || *end != '.' || !isdigit((unsigned char)end[1])) {
        return -1;
    }
    long mi = strtol(end + 1, NULL, 10);
    *major = (int)ma;
    *minor = (int)mi;
    return 0;
}

/* PY_VERSION ("3.9.18") among the image's strings, for versions without
 * Py_Version: the micro release.  The literal may share its bytes with a
 * longer string that ends the same way (".../versions/3.9.18"), so it is
 * looked for as the tail of a string. */
static int
micro_from_image(const unsigned char *image, size_t size, int major, int minor)
{
    char prefix[16];
    int plen = snprintf(prefix, sizeof prefix, "%d.%d.", major, minor);
    if (plen < 0 || plen >= (int)sizeof prefix) {
        return -1;
    }
    const unsigned char *p = image, *end = image + size;
    while ((p = memmem(p, (size_t)(end - p), prefix, (size_t)plen)) != NULL) {
        const unsigned char *q = p + plen;
        int micro = 0, digits = 0;
        while (q < end && isdigit(*q) && digits < 3) {
            micro = micro * 10 + (*q++ - '0');
            digits++;
        }
        int starts_well = p == image || !(isdigit(p[-1]) || p[-1] == '.');
        if (digits && starts_well && q < end && *q == '\0') {
            return micro;
        }
        p += plen;
    }
    return -1;
}

static li_status
map_file(pid_t pid, const char *path, unsigned char **image, size_t *size)
{
    /* Through the target's root, so a process in a container is read from
     * its own file system. */
    char rooted[LI_PATH_MAX + 32];
    snprintf(rooted, sizeof rooted, "/proc/%d/root%s", (int)pid, path);
    int fd = open(rooted, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        return status_of_errno(errno);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return LI_OS_ERROR;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        return status_of_errno(errno);
    }
    *image = m;
    *size = (size_t)st.st_size;
    return LI_OK;
}

/* What to add to a symbol's value in file f for its address in the target:
 * f is mapped from offset 0 at f->start, where its first segment goes. */
static uint64_t
load_bias(const mapped_file *f, const elf_symbols *syms)
{
    return f->start - (syms->load_vaddr & ~(uint64_t)0xfff);
}

/* Where glibc's struct pthread keeps the kernel's tid, as glibc describes
 * it to libthread_db (debuggers' thread library): _thread_db_pthread_tid,
 * three uint32_t (bits, count, offset), which libc.so.6 exports since glibc
 * 2.34 and libpthread.so.0 before.  described is its address in the target
 * where the file holding _PyRuntime has it (glibc linked in statically),
 * else 0: the threads libraries the target has mapped are looked in.  -1
 * where nothing says (musl, no such symbol): the walk learns the offset
 * from the target's threads instead (walk.c). */
static int
described_pthread_tid_offset(li_target *t, const char *exe, uint64_t described)
{
    if (described == 0) {
        mapped_file files[4];
        size_t n = 0;
        if (mapped_files(t->pid, is_threads_library, exe, files, 4, &n) != LI_OK) {
            return -1;
        }
        for (size_t i = 0; i < n && described == 0; i++) {
            unsigned char *image;
            size_t size;
            elf_symbols syms;
            if (map_file(t->pid, files[i].path, &image, &size) != LI_OK) {
                continue;
            }
            if (elf_lookup(image, size, &syms) == 0 && syms.pthread_tid) {
                described = syms.pthread_tid + load_bias(&files[i], &syms);
            }
            munmap(image, size);
        }
    }
    uint32_t desc[3];
    if (described == 0 || li_read(t, described, desc, sizeof desc) != 0) {
        return -1;
    }
    /* One 32-bit field (a pid_t, not an array), within the reads walk.c
     * makes of a struct pthread. */
    if (desc[0] != 32 || desc[1] != 1 || desc[2] % 4 != 0 || desc[2] >= 4096) {
        return -1;
    }
    return (int)desc[2];
}

li_status
li_attach(li_target *t, pid_t pid, char *msg, size_t msg_size)
{
    memset(t, 0, sizeof *t);
    t->pid = pid;
    t->pthread_tid_offset = -1;
    t->micro = -1;
    if (pid <= 0 || kill(pid, 0) != 0) {
        if (pid <= 0 || errno == ESRCH) {
            snprintf(msg, msg_size, "no process with id %d", (int)pid);
            return LI_NO_PROCESS;
        }
        /* EPERM here only says signals are refused; reading may still work. */
    }
    mapped_file files[8];
    size_t nfiles = 0;
    char exe[LI_PATH_MAX];
    li_status st = python_files(pid, files, 8, &nfiles, exe, sizeof exe);
    if (st != LI_OK) {
        snprintf(msg, msg_size, "cannot read /proc/%d/maps: %s", (int)pid, strerror(errno));
        return st;
    }
    for (size_t i = 0; i < nfiles; i++) {
        unsigned char *image;
        size_t size;
        if (map_file(pid, files[i].path, &image, &size) != LI_OK) {
            continue;
        }
        elf_symbols syms;
        int ok = elf_lookup(image, size, &syms) == 0 && syms.found_runtime;
        int micro = -1;
        if (ok) {
            int ma, mi;
            if (version_from_name(files[i].path, &ma, &mi) == 0) {
                micro = micro_from_image(image, size, ma, mi);
            }
        }
        munmap(image, size);
        if (!ok) {
            continue;
        }
        uint64_t bias = load_bias(&files[i], &syms);
        t->runtime = syms.runtime + bias;
        t->code_type = syms.code_type ? syms.code_type + bias : 0;
        t->dict_type = syms.dict_type ? syms.dict_type + bias : 0;
        t->str_type = syms.str_type ? syms.str_type + bias : 0;
        t->module_type = syms.module_type ? syms.module_type + bias : 0;
        t->long_type = syms.long_type ? syms.long_type + bias : 0;
        t->init_cleanup = syms.init_cleanup ? syms.init_cleanup + bias : 0;
        snprintf(t->binary, sizeof t->binary, "%s", files[i].path);
        /* Which CPython: what the target says of itself before its name. */
        unsigned char cookie[16];
        int err = li_read(t, t->runtime, cookie, sizeof cookie);
        if (err) {
            t->last_errno = err;
            snprintf(msg, msg_size, "cannot read the memory of process %d: %s", (int)pid,
                     strerror(err));
            return status_of_errno(err);
        }
        uint64_t hex = 0;
        if (memcmp(cookie, "xdebugpy", 8) == 0) {
            memcpy(&hex, cookie + 8, sizeof hex);
        }
        else if (syms.py_version) {
            err = li_read(t, syms.py_version + bias, &hex, sizeof hex);
            if (err) {
                hex = 0;
            }
        }
        if (hex) {
            t->major = (int)((hex >> 24) & 0xff);
            t->minor = (int)((hex >> 16) & 0xff);
            t->micro = (int)((hex >> 8) & 0xff);
        }
        else if (version_from_name(files[i].path, &t->major, &t->minor) == 0
                 || version_from_name(exe, &t->major, &t->minor) == 0) {
            t->micro = micro;
        }
        else {
            snprintf(msg, msg_size, "cannot tell which CPython process %d runs (%s)",
                     (int)pid, files[i].path);
            return LI_UNSUPPORTED;
        }
        const li_layout *layout = li_layout_find(t->major, t->minor);
        if (layout == NULL) {
            snprintf(msg, msg_size,
                     "process %d runs CPython %d.%d, which is not supported (3.9-3.13 are)",
                     (int)pid, t->major, t->minor);
            return LI_UNSUPPORTED;
        }
        if (layout->from_debug_offsets) {
            const li_debug_offsets_fields *d = li_debug_offsets_find(t->major, t->minor);
            unsigned char buf[4096];
            if (d == NULL || (size_t)d->size > sizeof buf) {
                snprintf(msg, msg_size, "no _Py_DebugOffsets description for %d.%d",
                         t->major, t->minor);
                return LI_UNSUPPORTED;
            }
            err = li_read(t, t->runtime, buf, (size_t)d->size);
            if (err) {
                snprintf(msg, msg_size, "cannot read _Py_DebugOffsets of process %d: %s",
                         (int)pid, strerror(err));
                return status_of_errno(err);
            }
            if (li_layout_from_debug_offsets(&t->layout, layout, buf, (size_t)d->size,
                                             msg, msg_size) != 0) {
                return LI_UNSUPPORTED;
            }
        }
        else {
            t->layout = *layout;
        }
        if (t->layout.code_size > (int64_t)sizeof(((li_raw_frame *)0)->head)) {
            snprintf(msg, msg_size, "code objects of %d.%d are too large for the reader",
                     t->major, t->minor);
            return LI_UNSUPPORTED;
        }
        if (t->layout.tstate_native_thread_id < 0) {
            t->pthread_tid_offset = described_pthread_tid_offset(
                t, exe, syms.pthread_tid ? syms.pthread_tid + bias : 0);
        }
        return LI_OK;
    }
    /* Nothing readable: a process that is gone, or not a CPython one. */
    if (kill(pid, 0) != 0 && errno == ESRCH) {
        snprintf(msg, msg_size, "no process with id %d", (int)pid);
        return LI_NO_PROCESS;
    }
    int ma, mi;
    if (version_from_name(exe, &ma, &mi) == 0 && li_layout_find(ma, mi) == NULL) {
        snprintf(msg, msg_size, "process %d runs %s (Python %d.%d), which is not supported "
                 "(CPython 3.9-3.13 are)", (int)pid, exe, ma, mi);
        return LI_UNSUPPORTED;
    }
    snprintf(msg, msg_size, "process %d (%s) is not a CPython process: no _PyRuntime in "
             "its executable or a libpython it has mapped", (int)pid, exe[0] ? exe : "?");
    return LI_NOT_PYTHON;
}
