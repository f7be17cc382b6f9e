/* lowimpact._profile: the measurement core of `lowimpact profile`.
 *
 * A deterministic profiler on C callbacks (lowimpact.h, tool side), so no
 * Python code runs per event.  It sees what cProfile on 3.12 sees and counts
 * as it does:
 *
 *   PY_START, PY_RESUME, PY_THROW   a Python frame starts or is entered
 *                                   again: a call of its code object (a
 *                                   generator's resumption is a call, as
 *                                   for cProfile and sys.setprofile);
 *   PY_RETURN, PY_YIELD, PY_UNWIND  it leaves: time suspended is not its;
 *   CALL                            a call of a built-in function or of a
 *                                   method of a C type (a method descriptor
 *                                   with its self) starts;
 *   C_RETURN, C_RAISE               that call ends.
 *
 * A call is counted when it ends (or when profiling is disabled with it
 * still running), as cProfile does.  Each thread has its own stack and its
 * own recursion levels, so threads do not mix their calls.  Functions are
 * keyed as in cProfile: Python code by its code object, C functions by
 * their PyMethodDef; callers by (caller, callee) pairs.  The names of C
 * functions are made when the stats are read, not in the callbacks, so a
 * callback never runs Python code.
 *
 * The wall clock is the CPU's time-stamp counter where it is invariant
 * (x86 with constant and non-stop TSC): reading it costs a fraction of
 * clock_gettime(), which is two readings per call.  Its ticks are turned
 * into seconds by the ratio of CLOCK_MONOTONIC to ticks over the time
 * profiling was enabled.
 *
 * Optionally (tree=True) the call tree is kept too, one node per distinct
 * path from a thread's first frame, for flame graphs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "lowimpact.h"
#include "li_shared.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#define EVENT_BIT(e) (1u << (e))
#define PROFILER_ID 2

/* The callbacks run at every call: what they mostly do is inlined, what
 * they rarely do (a new function, thread or pair, more room) is not, so
 * that the common path saves few registers. */
#if defined(__GNUC__) || defined(__clang__)
#define OUT_OF_LINE __attribute__((noinline))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define OUT_OF_LINE
#define ALWAYS_INLINE inline
#endif

/* ---- a hash table from one or two pointers to an index ------------------ */

typedef struct {
    const void *a, *b;
    Py_ssize_t value;   /* -1: empty slot */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;   /* capacity - 1; capacity is a power of two */
    size_t used;
} Table;

static inline size_t
hash_pair(const void *a, const void *b)
{
    uint64_t h = (uint64_t)(uintptr_t)a * 0x9E3779B97F4A7C15u;
    h ^= (uint64_t)(uintptr_t)b * 0xC2B2AE3D27D4EB4Fu;
    return (size_t)(h ^ (h >> 29));
}

static int
table_init(Table *t, size_t capacity)
{
    t->slots = PyMem_Malloc(capacity * sizeof(Slot));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < capacity; i++) {
        t->slots[i].value = -1;
    }
    t->mask = capacity - 1;
    t->used = 0;
    return 0;
}

static void
table_free(Table *t)
{
    PyMem_Free(t->slots);
    t->slots = NULL;
    t->mask = t->used = 0;
}

static inline Py_ssize_t
table_get(const Table *t, const void *a, const void *b)
{
    size_t i = hash_pair(a, b) & t->mask;
    for (;;) {
        const Slot *s = &t->slots[i];
        if (s->value < 0 || (s->a == a && s->b == b)) {
            return s->value;
        }
        i = (i + 1) & t->mask;
    }
}

/* Adds a key known to be missing.  0, or -1 with MemoryError. */
static int
table_add(Table *t, const void *a, const void *b, Py_ssize_t value)
{
    if ((t->used + 1) * 4 > (t->mask + 1) * 3) {
        Table bigger;
        if (table_init(&bigger, (t->mask + 1) * 2) < 0) {
            return -1;
        }
        for (size_t i = 0; i <= t->mask; i++) {
            Slot *s = &t->slots[i];
            if (s->value >= 0) {
                size_t j = hash_pair(s->a, s->b) & bigger.mask;
                while (bigger.slots[j].value >= 0) {
                    j = (j + 1) & bigger.mask;
                }
                bigger.slots[j] = *s;
            }
        }
        bigger.used = t->used;
        table_free(t);
        *t = bigger;
    }
    size_t i = hash_pair(a, b) & t->mask;
    while (t->slots[i].value >= 0) {
        i = (i + 1) & t->mask;
    }
    t->slots[i].a = a;
    t->slots[i].b = b;
    t->slots[i].value = value;
    t->used++;
    return 0;
}

static int grow_to(void **array, Py_ssize_t *capacity, Py_ssize_t need, size_t size);

/* Grows *array (of *capacity items of `size` bytes) to hold index `need`,
 * zero-filling the new part.  0, or -1 with MemoryError.  Inline: the
 * callbacks call it on every event, and it mostly has nothing to do. */
static inline int
grow(void **array, Py_ssize_t *capacity, Py_ssize_t need, size_t size)
{
    return need < *capacity ? 0 : grow_to(array, capacity, need, size);
}

OUT_OF_LINE static int
grow_to(void **array, Py_ssize_t *capacity, Py_ssize_t need, size_t size)
{
    Py_ssize_t n = *capacity ? *capacity : 16;
    while (n <= need) {
        n *= 2;
    }
    void *bigger = PyMem_Realloc(*array, (size_t)n * size);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset((char *)bigger + (size_t)*capacity * size, 0, (size_t)(n - *capacity) * size);
    *array = bigger;
    *capacity = n;
    return 0;
}

/* ---- what is recorded ---------------------------------------------------- */

/* Calls, recursive calls and times (ns) of a function, of a caller-callee
 * pair or of a node of the call tree. */
typedef struct {
    int64_t calls, reccalls, inline_ticks, total_ticks;
} Stat;

/* How cProfile names a C function. */
enum { C_UNBOUND, C_MODULE, C_METHOD };

/* A function: a code object (`code`, owned) or a C function (`method`, a
 * PyMethodDef; `owner` (owned, may be NULL) is, by `kind`: the function's
 * __module__ value (C_UNBOUND: no __self__; C_MODULE: a module's function),
 * or the type it is a method of (C_METHOD)). */
typedef struct {
    Stat stat;
    PyObject *code;
    PyMethodDef *method;
    PyObject *owner;
    int kind;
    /* The pair of its last call (caller + 1, 0: none yet): a function is
     * mostly called from the same caller as last time, so this saves the
     * pair table's lookup on most calls. */
    Py_ssize_t last_caller, last_pair;
} Function;

typedef struct {
    Stat stat;
    Py_ssize_t caller, callee;
} Pair;

typedef struct {
    Stat stat;
    Py_ssize_t parent;   /* -1: a thread's first frame */
    Py_ssize_t function;
    unsigned long thread;
} Node;

typedef struct {
    Py_ssize_t function, pair, node;   /* pair, node: -1 when none */
    int64_t start, children;           /* clock ticks */
} Frame;

typedef struct ThreadStack {
    PyThreadState *tstate;
    uint64_t tstate_id;      /* a new thread may get a dead one's tstate address */
    unsigned long ident;
    Frame *frames;
    Py_ssize_t depth, capacity;
    /* Recursion levels in this thread, by function and pair index. */
    uint32_t *levels;
    Py_ssize_t levels_capacity;
    uint32_t *pair_levels;
    Py_ssize_t pair_levels_capacity;
    int64_t last;   /* the last clock reading (for --clock cpu at disable) */
    struct ThreadStack *next;
} ThreadStack;

typedef struct {
    PyObject_HEAD
    int cpu;        /* CLOCK_THREAD_CPUTIME_ID instead of CLOCK_MONOTONIC */
    int subcalls;   /* record caller-callee pairs */
    int builtins;   /* profile C functions */
    int tree;       /* record the call tree */
    int enabled;
    int tsc;        /* the wall clock is the TSC */
    /* Calibration of the TSC: ticks and CLOCK_MONOTONIC ns over the
     * periods profiling was enabled, and where the current one began. */
    int64_t calibrated_ticks, calibrated_ns, period_ticks, period_ns;
    PyObject *missing;   /* sys.monitoring.MISSING (owned) */
    Table function_index;   /* (code or PyMethodDef, NULL) -> index in functions */
    Table pair_index;       /* (caller, callee) as index + 1 -> index in pairs */
    Table node_index;       /* (parent node + 1 or thread, function + 1) -> index in nodes */
    Function *functions;
    Py_ssize_t nfunctions, functions_capacity;
    Pair *pairs;
    Py_ssize_t npairs, pairs_capacity;
    Node *nodes;
    Py_ssize_t nnodes, nodes_capacity;
    ThreadStack *threads;
    ThreadStack *last_thread;
} Profiler;

/* The profiler whose callbacks are registered (borrowed: disable() and
 * dealloc unregister before it dies). */
static Profiler *active_profiler = NULL;

static int64_t
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether the CPU's TSC ticks at a constant rate through frequency and
 * sleep states (CPUID 0x80000007, EDX bit 8). */
static int
invariant_tsc(void)
{
#ifdef HAVE_TSC
    unsigned int eax, ebx, ecx, edx;
    if (__get_cpuid(0x80000007, &eax, &ebx, &ecx, &edx)) {
        return (edx >> 8) & 1;
    }
#endif
    return 0;
}

static inline int64_t
now(const Profiler *self)
{
#ifdef HAVE_TSC
    if (self->tsc) {
        return (int64_t)__rdtsc();
    }
#endif
    return clock_ns(self->cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC);
}

/* Seconds per clock tick. */
static double
seconds_per_tick(const Profiler *self)
{
    if (!self->tsc) {
        return 1e-9;
    }
    int64_t ticks = self->calibrated_ticks, ns = self->calibrated_ns;
    if (self->enabled) {
        ticks += now(self) - self->period_ticks;
        ns += clock_ns(CLOCK_MONOTONIC) - self->period_ns;
    }
    return ticks > 0 && ns > 0 ? 1e-9 * (double)ns / (double)ticks : 1e-9;
}

static ThreadStack *find_thread(Profiler *self, PyThreadState *tstate);

/* The stack of the thread running, mostly the one of the last event. */
static inline ThreadStack *
current_thread(Profiler *self)
{
    PyThreadState *tstate = PyThreadState_Get();
    ThreadStack *t = self->last_thread;
    if (t != NULL && t->tstate == tstate && t->tstate_id == tstate->id) {
        return t;
    }
    return find_thread(self, tstate);
}

OUT_OF_LINE static ThreadStack *
find_thread(Profiler *self, PyThreadState *tstate)
{
    uint64_t id = tstate->id;
    ThreadStack *t;
    for (t = self->threads; t != NULL; t = t->next) {
        if (t->tstate == tstate && t->tstate_id == id) {
            self->last_thread = t;
            return t;
        }
    }
    t = PyMem_Calloc(1, sizeof(ThreadStack));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    t->tstate = tstate;
    t->tstate_id = id;
    t->ident = PyThread_get_thread_ident();
    t->next = self->threads;
    self->threads = t;
    self->last_thread = t;
    return t;
}

static Py_ssize_t
new_function(Profiler *self, const void *key)
{
    if (grow((void **)&self->functions, &self->functions_capacity, self->nfunctions,
             sizeof(Function)) < 0 ||
        table_add(&self->function_index, key, NULL, self->nfunctions) < 0) {
        return -1;
    }
    /* (After clear(), the slot may hold a forgotten function.) */
    memset(&self->functions[self->nfunctions], 0, sizeof(Function));
    return self->nfunctions++;
}

OUT_OF_LINE static Py_ssize_t
add_code_function(Profiler *self, PyObject *code)
{
    Py_ssize_t index = new_function(self, code);
    if (index >= 0) {
        self->functions[index].code = Py_NewRef(code);
    }
    return index;
}

static inline Py_ssize_t
code_function(Profiler *self, PyObject *code)
{
    Py_ssize_t index = table_get(&self->function_index, code, NULL);
    return index >= 0 ? index : add_code_function(self, code);
}

/* Whether a CALL, C_RETURN or C_RAISE of `callable` (first argument
 * `arg0`) is a call cProfile profiles: a built-in function, or a method
 * descriptor given a self of its type.  Python functions, the most
 * common, are answered first. */
static inline int
is_c_call(const Profiler *self, PyObject *callable, PyObject *arg0)
{
    PyTypeObject *type = Py_TYPE(callable);
    if (type == &PyFunction_Type) {
        return 0;
    }
    if (type == &PyMethodDescr_Type) {
        return arg0 != self->missing &&
               PyObject_TypeCheck(arg0, ((PyMethodDescrObject *)callable)->d_common.d_type);
    }
    /* The common exact types first: for any other, PyCFunction_Check()
       calls PyType_IsSubtype(). */
    if (type == &PyCFunction_Type || type == &PyCMethod_Type) {
        return 1;
    }
    if (type == &PyType_Type || type == &PyMethod_Type) {
        return 0;   /* a class, a bound method of Python code */
    }
    return PyCFunction_Check(callable);
}

/* A C function seen for the first time: how cProfile names it is kept. */
OUT_OF_LINE static Py_ssize_t
add_c_function(Profiler *self, PyMethodDef *method, PyObject *callable, PyObject *arg0)
{
    PyObject *owner;
    int kind;
    if (Py_IS_TYPE(callable, &PyMethodDescr_Type)) {
        kind = C_METHOD;
        owner = (PyObject *)Py_TYPE(arg0);
    }
    else {
        PyCFunctionObject *f = (PyCFunctionObject *)callable;
        PyObject *bound = f->m_self;
        kind = bound == NULL ? C_UNBOUND : PyModule_Check(bound) ? C_MODULE : C_METHOD;
        owner = kind == C_METHOD ? (PyObject *)Py_TYPE(bound) : f->m_module;
    }
    Py_ssize_t index = new_function(self, method);
    if (index >= 0) {
        Function *f = &self->functions[index];
        f->method = method;
        f->owner = Py_XNewRef(owner);
        f->kind = kind;
    }
    return index;
}

/* The function of a call that is_c_call(); -1 on error.  Functions are
 * keyed by their PyMethodDef: the rest is looked at only the first time. */
static inline Py_ssize_t
c_function(Profiler *self, PyObject *callable, PyObject *arg0)
{
    PyMethodDef *method = Py_IS_TYPE(callable, &PyMethodDescr_Type)
        ? ((PyMethodDescrObject *)callable)->d_method
        : ((PyCFunctionObject *)callable)->m_ml;
    Py_ssize_t index = table_get(&self->function_index, method, NULL);
    return index >= 0 ? index : add_c_function(self, method, callable, arg0);
}

OUT_OF_LINE static Py_ssize_t
new_pair(Profiler *self, Py_ssize_t caller, Py_ssize_t callee)
{
    const void *a = (const void *)(uintptr_t)(caller + 1), *b = (const void *)(uintptr_t)(callee + 1);
    Py_ssize_t index = table_get(&self->pair_index, a, b);
    if (index >= 0) {
        return index;
    }
    if (grow((void **)&self->pairs, &self->pairs_capacity, self->npairs, sizeof(Pair)) < 0 ||
        table_add(&self->pair_index, a, b, self->npairs) < 0) {
        return -1;
    }
    memset(&self->pairs[self->npairs], 0, sizeof(Pair));
    self->pairs[self->npairs].caller = caller;
    self->pairs[self->npairs].callee = callee;
    return self->npairs++;
}

static Py_ssize_t
new_node(Profiler *self, ThreadStack *t, Py_ssize_t parent, Py_ssize_t function)
{
    const void *a = parent >= 0 ? (const void *)(uintptr_t)(parent + 1) : (const void *)t;
    const void *b = (const void *)(uintptr_t)(function + 1);
    Py_ssize_t index = table_get(&self->node_index, a, b);
    if (index >= 0) {
        return index;
    }
    if (grow((void **)&self->nodes, &self->nodes_capacity, self->nnodes, sizeof(Node)) < 0 ||
        table_add(&self->node_index, a, b, self->nnodes) < 0) {
        return -1;
    }
    Node *n = &self->nodes[self->nnodes];
    memset(n, 0, sizeof(Node));
    n->parent = parent;
    n->function = function;
    n->thread = t->ident;
    return self->nnodes++;
}

/* Pushes a call of `function` on thread `t`'s stack.  0 or -1. */
static ALWAYS_INLINE int
enter(Profiler *self, ThreadStack *t, Py_ssize_t function)
{
    Py_ssize_t pair = -1, node = -1;
    if (t->depth > 0 && self->subcalls) {
        Py_ssize_t caller = t->frames[t->depth - 1].function;
        Function *callee = &self->functions[function];
        if (callee->last_caller == caller + 1) {
            pair = callee->last_pair;
        }
        else {
            pair = new_pair(self, caller, function);
            if (pair < 0) {
                return -1;
            }
            /* (new_pair() leaves the functions where they are.) */
            callee->last_caller = caller + 1;
            callee->last_pair = pair;
        }
        if (grow((void **)&t->pair_levels, &t->pair_levels_capacity, pair, sizeof(uint32_t)) < 0) {
            return -1;
        }
    }
    if (self->tree) {
        node = new_node(self, t, t->depth > 0 ? t->frames[t->depth - 1].node : -1, function);
        if (node < 0) {
            return -1;
        }
    }
    if (grow((void **)&t->levels, &t->levels_capacity, function, sizeof(uint32_t)) < 0 ||
        grow((void **)&t->frames, &t->capacity, t->depth, sizeof(Frame)) < 0) {
        return -1;
    }
    t->levels[function]++;
    if (pair >= 0) {
        t->pair_levels[pair]++;
    }
    Frame *f = &t->frames[t->depth++];
    f->function = function;
    f->pair = pair;
    f->node = node;
    f->children = 0;
    f->start = t->last = now(self);
    return 0;
}

static inline void
count(Stat *s, uint32_t *level, int64_t total, int64_t own)
{
    if (--*level == 0) {
        s->total_ticks += total;
    }
    else {
        s->reccalls++;
    }
    s->inline_ticks += own;
    s->calls++;
}

/* Pops thread `t`'s innermost call at time `end`, whatever it is, as
 * cProfile does: returns and calls are always paired in one thread. */
static ALWAYS_INLINE void
leave(Profiler *self, ThreadStack *t, int64_t end)
{
    if (t->depth == 0) {
        return;   /* a frame that started before profiling did */
    }
    Frame *f = &t->frames[--t->depth];
    int64_t total = end - f->start;
    int64_t own = total - f->children;
    if (t->depth > 0) {
        t->frames[t->depth - 1].children += total;
    }
    count(&self->functions[f->function].stat, &t->levels[f->function], total, own);
    if (f->pair >= 0) {
        count(&self->pairs[f->pair].stat, &t->pair_levels[f->pair], total, own);
    }
    if (f->node >= 0) {
        uint32_t once = 1;   /* a path appears once on a stack */
        count(&self->nodes[f->node].stat, &once, total, own);
    }
}

/* ---- the callbacks ------------------------------------------------------- */

/* The profiler a callback was registered for, or NULL when the callback
 * object outlived it (register_callback() hands callbacks back to Python,
 * which may keep them, call them or register them again). */
static inline Profiler *
profiler_of(void *data)
{
    return data != NULL && data == active_profiler ? (Profiler *)data : NULL;
}

static int
on_py_enter(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Profiler *self = profiler_of(data);
    if (self == NULL) {
        return LOWIMPACT_CONTINUE;
    }
    if (nargs < 1) {
        return LOWIMPACT_CONTINUE;
    }
    ThreadStack *t = current_thread(self);
    if (t == NULL) {
        return -1;
    }
    Py_ssize_t function = code_function(self, args[0]);
    if (function < 0 || enter(self, t, function) < 0) {
        return -1;
    }
    return LOWIMPACT_CONTINUE;
}

static int
on_py_leave(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    (void)args;
    (void)nargs;
    Profiler *self = profiler_of(data);
    if (self == NULL) {
        return LOWIMPACT_CONTINUE;
    }
    int64_t end = now(self);
    ThreadStack *t = current_thread(self);
    if (t == NULL) {
        return -1;
    }
    t->last = end;
    leave(self, t, end);
    return LOWIMPACT_CONTINUE;
}

static int on_c_call(Profiler *self, PyObject *const *args);

static int
on_call(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    /* Most calls are of Python functions, which PY_START counts: they
       leave before anything that would need registers saved. */
    if (nargs < 4 || Py_IS_TYPE(args[2], &PyFunction_Type)) {
        return LOWIMPACT_CONTINUE;
    }
    Profiler *self = profiler_of(data);
    if (self == NULL || !is_c_call(self, args[2], args[3])) {
        return LOWIMPACT_CONTINUE;
    }
    return on_c_call(self, args);
}

OUT_OF_LINE static int
on_c_call(Profiler *self, PyObject *const *args)
{
    Py_ssize_t function = c_function(self, args[2], args[3]);
    ThreadStack *t = function < 0 ? NULL : current_thread(self);
    if (t == NULL || enter(self, t, function) < 0) {
        return -1;
    }
    return LOWIMPACT_CONTINUE;
}

static int
on_c_leave(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Profiler *self = profiler_of(data);
    if (self == NULL) {
        return LOWIMPACT_CONTINUE;
    }
    int64_t end = now(self);
    /* Only the calls on_call pushed. */
    if (nargs < 4 || !is_c_call(self, args[2], args[3])) {
        return LOWIMPACT_CONTINUE;
    }
    ThreadStack *t = current_thread(self);
    if (t == NULL) {
        return -1;
    }
    t->last = end;
    leave(self, t, end);
    return LOWIMPACT_CONTINUE;
}

/* ---- enable, disable ------------------------------------------------------ */

static const struct {
    int event;
    LowImpact_Callback callback;
    int builtin;
} callbacks[] = {
    {PY_MONITORING_EVENT_PY_START, on_py_enter, 0},
    {PY_MONITORING_EVENT_PY_RESUME, on_py_enter, 0},
    {PY_MONITORING_EVENT_PY_THROW, on_py_enter, 0},
    {PY_MONITORING_EVENT_PY_RETURN, on_py_leave, 0},
    {PY_MONITORING_EVENT_PY_YIELD, on_py_leave, 0},
    {PY_MONITORING_EVENT_PY_UNWIND, on_py_leave, 0},
    {PY_MONITORING_EVENT_CALL, on_call, 1},
    {PY_MONITORING_EVENT_C_RETURN, on_c_leave, 1},
    {PY_MONITORING_EVENT_C_RAISE, on_c_leave, 1},
};
#define NCALLBACKS (sizeof(callbacks) / sizeof(callbacks[0]))

/* Every step is tried whatever the others do: callbacks must not outlive
 * their data. */
static int
unregister(Profiler *self)
{
    PyObject *first = NULL;   /* owned: the first failure */
    if (LowImpact_SetEvents(PROFILER_ID, 0) < 0) {
        li_keep_first_error(&first);
        if (LowImpact_UseToolId(PROFILER_ID, "lowimpact profile") < 0) {
            PyErr_Clear();   /* someone else holds it: its callbacks are its own */
        }
    }
    for (size_t i = 0; i < NCALLBACKS; i++) {
        if (LowImpact_RegisterCallback(PROFILER_ID, callbacks[i].event, NULL, NULL) < 0) {
            li_keep_first_error(&first);
        }
    }
    if (LowImpact_FreeToolId(PROFILER_ID) < 0) {
        li_keep_first_error(&first);
    }
    self->enabled = 0;
    if (active_profiler == self) {
        active_profiler = NULL;
    }
    return li_raise_kept_error(first);
}

/* Ends every call still running, in every thread, as cProfile's disable
 * does; another thread's CPU clock is not readable here, so its calls end
 * at its last reading. */
static void
flush(Profiler *self)
{
    int64_t wall = now(self);
    for (ThreadStack *t = self->threads; t != NULL; t = t->next) {
        int64_t end = self->cpu ? t->last : wall;
        if (self->cpu && t->tstate == PyThreadState_Get()) {
            end = wall;
        }
        while (t->depth > 0) {
            leave(self, t, end);
        }
    }
}

PyDoc_STRVAR(enable_doc,
"enable()\n\n"
"Start profiling every thread: take tool id 2 (sys.monitoring.PROFILER_ID)\n"
"and register the C callbacks.");

static PyObject *
profiler_enable(Profiler *self, PyObject *unused)
{
    (void)unused;
    if (self->enabled) {
        Py_RETURN_NONE;
    }
    if (self->function_index.slots == NULL || self->missing == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the profiler was not initialised (__init__ not called)");
        return NULL;
    }
    if (active_profiler != NULL) {
        PyErr_SetString(PyExc_ValueError, "another lowimpact profiler is enabled");
        return NULL;
    }
    if (LowImpact_UseToolId(PROFILER_ID, "lowimpact profile") < 0) {
        return NULL;
    }
    self->enabled = 1;
    active_profiler = self;
    self->period_ticks = now(self);
    self->period_ns = clock_ns(CLOCK_MONOTONIC);
    uint32_t events = 0;
    for (size_t i = 0; i < NCALLBACKS; i++) {
        if (callbacks[i].builtin && !self->builtins) {
            continue;
        }
        if (LowImpact_RegisterCallback(PROFILER_ID, callbacks[i].event, callbacks[i].callback,
                                       self) < 0) {
            goto error;
        }
        events |= EVENT_BIT(callbacks[i].event);
    }
    if (LowImpact_SetEvents(PROFILER_ID, events) < 0) {
        goto error;
    }
    Py_RETURN_NONE;
error:;
    PyObject *type, *value, *traceback;   /* owned while held */
    PyErr_Fetch(&type, &value, &traceback);
    if (unregister(self) < 0) {
        PyErr_Clear();   /* the first error is the one to report */
    }
    PyErr_Restore(type, value, traceback);
    return NULL;
}

PyDoc_STRVAR(disable_doc,
"disable()\n\n"
"Stop profiling and give the tool id back; calls still running end now.");

static PyObject *
profiler_disable(Profiler *self, PyObject *unused)
{
    (void)unused;
    if (!self->enabled) {
        Py_RETURN_NONE;
    }
    flush(self);
    if (self->tsc) {
        self->calibrated_ticks += now(self) - self->period_ticks;
        self->calibrated_ns += clock_ns(CLOCK_MONOTONIC) - self->period_ns;
    }
    if (unregister(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static void
free_threads(Profiler *self)
{
    ThreadStack *t = self->threads;
    while (t != NULL) {
        ThreadStack *next = t->next;
        PyMem_Free(t->frames);
        PyMem_Free(t->levels);
        PyMem_Free(t->pair_levels);
        PyMem_Free(t);
        t = next;
    }
    self->threads = self->last_thread = NULL;
}

/* Drops what was recorded; the tables stay allocated.  Only while disabled:
 * a running profiler's stacks index them. */
static void
forget(Profiler *self)
{
    for (Py_ssize_t i = 0; i < self->nfunctions; i++) {
        Py_CLEAR(self->functions[i].code);
        Py_CLEAR(self->functions[i].owner);
    }
    self->nfunctions = self->npairs = self->nnodes = 0;
    Table *tables[] = {&self->function_index, &self->pair_index, &self->node_index};
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j <= tables[i]->mask; j++) {
            tables[i]->slots[j].value = -1;
        }
        tables[i]->used = 0;
    }
    free_threads(self);
}

PyDoc_STRVAR(clear_doc, "clear()\n\nForget what was recorded (profiling stays as it is).");

static PyObject *
profiler_clear_method(Profiler *self, PyObject *unused)
{
    (void)unused;
    if (self->function_index.slots == NULL) {
        Py_RETURN_NONE;
    }
    if (self->enabled) {
        /* Calls running now end at disable(): zero what they will add to. */
        for (Py_ssize_t i = 0; i < self->nfunctions; i++) {
            memset(&self->functions[i].stat, 0, sizeof(Stat));
        }
        for (Py_ssize_t i = 0; i < self->npairs; i++) {
            memset(&self->pairs[i].stat, 0, sizeof(Stat));
        }
        for (Py_ssize_t i = 0; i < self->nnodes; i++) {
            memset(&self->nodes[i].stat, 0, sizeof(Stat));
        }
        Py_RETURN_NONE;
    }
    forget(self);
    Py_RETURN_NONE;
}

/* ---- reading the stats ---------------------------------------------------- */

/* The name of a module, from a C function's __module__ value (borrowed
 * str or module); NULL (no exception) when it has none. */
static PyObject *
module_name(PyObject *module)
{
    if (module != NULL && PyUnicode_Check(module)) {
        return Py_NewRef(module);
    }
    if (module != NULL && PyModule_Check(module)) {
        PyObject *name = PyModule_GetNameObject(module);
        if (name == NULL) {
            PyErr_Clear();
        }
        return name;
    }
    return NULL;
}

/* cProfile's name of a C function: "<method 'append' of 'list' objects>",
 * "<built-in method builtins.len>", "<built-in method time.sleep>"... */
static PyObject *
c_label(Function *f)
{
    const char *name = f->method->ml_name;
    if (f->kind == C_METHOD) {
        PyObject *key = PyUnicode_FromString(name);   /* owned */
        if (key == NULL) {
            return NULL;
        }
        /* (repr may run Python code, which may drop the type's entry.) */
        PyObject *found = Py_XNewRef(_PyType_Lookup((PyTypeObject *)f->owner, key));
        Py_DECREF(key);
        if (found != NULL) {
            PyObject *label = PyObject_Repr(found);
            Py_DECREF(found);
            return label;
        }
        return PyUnicode_FromFormat("<built-in method %s>", name);
    }
    PyObject *module = module_name(f->owner);   /* owned */
    PyObject *label;
    if (f->kind == C_MODULE) {
        label = module != NULL && PyUnicode_Check(f->owner)
            ? PyUnicode_FromFormat("<built-in method %U.%s>", module, name)
            : PyUnicode_FromFormat("<built-in method %s>", name);
    }
    else {
        label = module != NULL && PyUnicode_CompareWithASCIIString(module, "builtins") != 0
            ? PyUnicode_FromFormat("<%U.%s>", module, name)
            : PyUnicode_FromFormat("<%s>", name);
    }
    Py_XDECREF(module);
    return label;
}

static PyObject *
stat_tuple(const Stat *s, double scale)
{
    return Py_BuildValue("(LLdd)", (long long)s->calls, (long long)s->reccalls,
                         (double)s->inline_ticks * scale, (double)s->total_ticks * scale);
}

PyDoc_STRVAR(getstats_doc,
"getstats() -> (functions, pairs, nodes)\n\n"
"functions: [(code object or name, (calls, recursive calls, own s, total s))];\n"
"pairs: [(caller index, callee index, stat)]; nodes (with tree=True):\n"
"[(parent index or -1, function index, thread ident, stat)].  Calls still\n"
"running are not in it until disable().");

static PyObject *
profiler_getstats(Profiler *self, PyObject *unused)
{
    (void)unused;
    double scale = seconds_per_tick(self);
    PyObject *functions = PyList_New(0), *pairs = PyList_New(0), *nodes = PyList_New(0);
    if (functions == NULL || pairs == NULL || nodes == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < self->nfunctions; i++) {
        Function *f = &self->functions[i];
        PyObject *label = f->code != NULL ? Py_NewRef(f->code) : c_label(f);
        /* (A repr() in c_label() may have run code that grew the array.) */
        PyObject *item = label == NULL ? NULL : Py_BuildValue(
            "(NN)", label, stat_tuple(&self->functions[i].stat, scale));
        if (item == NULL || PyList_Append(functions, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    for (Py_ssize_t i = 0; i < self->npairs; i++) {
        Pair *p = &self->pairs[i];
        PyObject *item = Py_BuildValue("(nnN)", p->caller, p->callee, stat_tuple(&p->stat, scale));
        if (item == NULL || PyList_Append(pairs, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    for (Py_ssize_t i = 0; i < self->nnodes; i++) {
        Node *n = &self->nodes[i];
        PyObject *item = Py_BuildValue("(nnkN)", n->parent, n->function, n->thread,
                                       stat_tuple(&n->stat, scale));
        if (item == NULL || PyList_Append(nodes, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    return Py_BuildValue("(NNN)", functions, pairs, nodes);
error:
    Py_XDECREF(functions);
    Py_XDECREF(pairs);
    Py_XDECREF(nodes);
    return NULL;
}

/* ---- the type ------------------------------------------------------------- */

static int
profiler_init(Profiler *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"clock", "subcalls", "builtins", "tree", NULL};
    const char *clock = "wall";
    int subcalls = 1, builtins = 1, tree = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|sppp:Profiler", keywords, &clock, &subcalls,
                                     &builtins, &tree)) {
        return -1;
    }
    if (self->enabled) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise an enabled profiler");
        return -1;
    }
    if (strcmp(clock, "wall") != 0 && strcmp(clock, "cpu") != 0) {
        PyErr_Format(PyExc_ValueError, "clock must be 'wall' or 'cpu', not '%s'", clock);
        return -1;
    }
    PyObject *monitoring = PyImport_ImportModule("lowimpact.monitoring");   /* owned */
    if (monitoring == NULL) {
        return -1;
    }
    PyObject *missing = PyObject_GetAttrString(monitoring, "MISSING");   /* owned */
    Py_DECREF(monitoring);
    if (missing == NULL) {
        return -1;
    }
    if (self->function_index.slots == NULL) {
        if (table_init(&self->function_index, 1024) < 0 ||
            table_init(&self->pair_index, 1024) < 0 || table_init(&self->node_index, 1024) < 0) {
            Py_DECREF(missing);
            return -1;
        }
    }
    else {
        forget(self);
    }
    Py_XSETREF(self->missing, missing);
    self->cpu = strcmp(clock, "cpu") == 0;
    self->tsc = !self->cpu && invariant_tsc();
    self->calibrated_ticks = self->calibrated_ns = 0;
    self->subcalls = subcalls;
    self->builtins = builtins;
    self->tree = tree;
    return 0;
}

static int
profiler_traverse(Profiler *self, visitproc visit, void *arg)
{
    Py_VISIT(self->missing);
    for (Py_ssize_t i = 0; i < self->nfunctions; i++) {
        Py_VISIT(self->functions[i].code);
        Py_VISIT(self->functions[i].owner);
    }
    return 0;
}

static int
profiler_tp_clear(Profiler *self)
{
    Py_CLEAR(self->missing);
    if (!self->enabled && self->function_index.slots != NULL) {
        forget(self);
    }
    return 0;
}

static void
profiler_dealloc(Profiler *self)
{
    PyObject_GC_UnTrack(self);
    if (self->enabled) {
        PyObject *type, *value, *traceback;   /* owned while held */
        PyErr_Fetch(&type, &value, &traceback);
        if (unregister(self) < 0) {
            PyErr_WriteUnraisable(NULL);
        }
        PyErr_Restore(type, value, traceback);
    }
    for (Py_ssize_t i = 0; i < self->nfunctions; i++) {
        Py_CLEAR(self->functions[i].code);
        Py_CLEAR(self->functions[i].owner);
    }
    Py_CLEAR(self->missing);
    free_threads(self);
    table_free(&self->function_index);
    table_free(&self->pair_index);
    table_free(&self->node_index);
    PyMem_Free(self->functions);
    PyMem_Free(self->pairs);
    PyMem_Free(self->nodes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
profiler_get_enabled(Profiler *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->enabled);
}

static PyObject *
profiler_get_clock(Profiler *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(self->cpu ? "cpu" : "wall");
}

static PyMethodDef profiler_methods[] = {
    {"enable", (PyCFunction)profiler_enable, METH_NOARGS, enable_doc},
    {"disable", (PyCFunction)profiler_disable, METH_NOARGS, disable_doc},
    {"clear", (PyCFunction)profiler_clear_method, METH_NOARGS, clear_doc},
    {"getstats", (PyCFunction)profiler_getstats, METH_NOARGS, getstats_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef profiler_getset[] = {
    {"enabled", (getter)profiler_get_enabled, NULL, "whether it is profiling", NULL},
    {"clock", (getter)profiler_get_clock, NULL, "'wall' or 'cpu'", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(profiler_doc,
"Profiler(clock='wall', subcalls=True, builtins=True, tree=False)\n\n"
"A deterministic profiler on C callbacks of lowimpact.monitoring (tool id 2):\n"
"call counts and own/total times per function, per caller, and with\n"
"tree=True per call path.  clock: 'wall' (CLOCK_MONOTONIC) or 'cpu' (each\n"
"thread's CPU time).");

static PyTypeObject ProfilerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._profile.Profiler",
    .tp_basicsize = sizeof(Profiler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = profiler_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)profiler_init,
    .tp_dealloc = (destructor)profiler_dealloc,
    .tp_traverse = (traverseproc)profiler_traverse,
    .tp_clear = (inquiry)profiler_tp_clear,
    .tp_methods = profiler_methods,
    .tp_getset = profiler_getset,
};

static struct PyModuleDef profile_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._profile",
    .m_doc = "The C measurement core of lowimpact profile.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__profile(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    if (PyType_Ready(&ProfilerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&profile_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Profiler", (PyObject *)&ProfilerType) < 0 ||
        PyModule_AddIntConstant(module, "PROFILER_ID", PROFILER_ID) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
