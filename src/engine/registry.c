/* Tools, event selections and per-code monitoring state.  Version independent. */

#include <stddef.h>

#include "li.h"

li_registry li_reg = {.dispatch_epoch = 1};

/* The co_extra slot holding li_code_state; -1 until reserved. */
static Py_ssize_t code_state_index = -1;
static Py_ssize_t n_code_states;     /* alive, for the tests' leak checks */
static li_code_state *local_codes;   /* list of code states with local events */

static li_code_state *marked_codes;  /* list of code states with marks */

/* The two lists thread code states through a pair of links each. */
#define LOCAL_LINKS offsetof(li_code_state, local)
#define MARKED_LINKS offsetof(li_code_state, marked)

static inline li_code_links *
links_of(li_code_state *cs, size_t which)
{
    return (li_code_links *)((char *)cs + which);
}

static void
unlink_from(li_code_state **head, li_code_state *cs, size_t which)
{
    li_code_links *l = links_of(cs, which);
    if (l->prev != NULL) {
        links_of(l->prev, which)->next = l->next;
    }
    else if (*head == cs) {
        *head = l->next;
    }
    if (l->next != NULL) {
        links_of(l->next, which)->prev = l->prev;
    }
    l->next = l->prev = NULL;
}

static void
link_to(li_code_state **head, li_code_state *cs, size_t which)
{
    li_code_links *l = links_of(cs, which);
    if (l->prev != NULL || *head == cs) {
        return;
    }
    l->next = *head;
    if (*head != NULL) {
        links_of(*head, which)->prev = cs;
    }
    *head = cs;
}

/* co_extra free function: the original code object is being deallocated. */
static void
code_state_free(void *ptr)
{
    li_code_state *cs = (li_code_state *)ptr;
    if (cs == NULL) {
        return;
    }
    unlink_from(&local_codes, cs, LOCAL_LINKS);
    unlink_from(&marked_codes, cs, MARKED_LINKS);
    li_backend_code_state_free(cs);
    for (int e = 0; e < LI_MARK_COUNT; e++) {
        PyMem_Free(cs->disabled[e]);
    }
    PyMem_Free(cs);
    n_code_states--;
}

int
li_registry_init(void)
{
    li_reg.disable = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (li_reg.disable == NULL) {
        return -1;
    }
    li_reg.missing = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (li_reg.missing == NULL) {
        return -1;
    }
    code_state_index = _PyEval_RequestCodeExtraIndex(code_state_free);
    if (code_state_index < 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lowimpact: no code object extra slot left");
        return -1;
    }
    return 0;
}

Py_ssize_t
li_code_state_index(void)
{
    return code_state_index;
}

li_code_state *
li_code_state_get(PyCodeObject *code)
{
    void *extra = NULL;
    if (code_state_index < 0 ||
        _PyCode_GetExtra((PyObject *)code, code_state_index, &extra) < 0)
    {
        PyErr_Clear();
        return NULL;
    }
    return (li_code_state *)extra;
}

li_code_state *
li_code_state_ensure(PyCodeObject *code)
{
    li_code_state *cs = li_code_state_get(code);
    if (cs != NULL) {
        return cs;
    }
    cs = PyMem_Calloc(1, sizeof(li_code_state));
    if (cs == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    cs->code = code;
    cs->n_units = LI_CODE_UNIT_COUNT(code);
    cs->disable_epoch = li_reg.disable_epoch;
    memcpy(cs->active_tools, li_reg.global_tools, sizeof(cs->active_tools));
    if (_PyCode_SetExtra((PyObject *)code, code_state_index, cs) < 0) {
        PyMem_Free(cs);
        /* (It sets no exception when it runs out of memory.) */
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return NULL;
    }
    n_code_states++;
    return cs;
}

Py_ssize_t
li_code_state_count(void)
{
    return n_code_states;
}

li_code_state *
li_local_codes(void)
{
    return local_codes;
}

li_code_state *
li_marked_codes(void)
{
    return marked_codes;
}

void
li_code_state_unlist_marked(li_code_state *cs)
{
    unlink_from(&marked_codes, cs, MARKED_LINKS);
}

static void
forget_marks(li_code_state *cs, int mark, int tool)
{
    uint8_t *marks = cs->disabled[mark];
    if (marks != NULL) {
        for (Py_ssize_t u = 0; u < cs->n_units; u++) {
            marks[u] &= (uint8_t)~(1 << tool);
        }
    }
}

/* Forgets what `tool` disabled of `event` in `cs` (of BRANCH, each way too). */
static void
forget_disabled(li_code_state *cs, int event, int tool)
{
    forget_marks(cs, event, tool);
    if (event == LI_BRANCH) {
        forget_marks(cs, LI_MARK_BRANCH_JUMPED, tool);
        forget_marks(cs, LI_MARK_BRANCH_ON, tool);
    }
}

bool
li_code_state_refresh_forgets(const li_code_state *cs)
{
    if (cs->disable_epoch != li_reg.disable_epoch) {
        return false;   /* restart_events() voided the marks already */
    }
    for (int e = 0; e < LI_MARK_COUNT; e++) {
        int event = li_mark_event(e);
        uint8_t changed = cs->active_tools[event] ^
                          (li_reg.global_tools[event] | cs->local_tools[event]);
        const uint8_t *marks = cs->disabled[e];
        for (Py_ssize_t u = 0; changed != 0 && marks != NULL && u < cs->n_units; u++) {
            if (marks[u] & changed) {
                return true;
            }
        }
    }
    return false;
}

bool
li_code_state_stale(const li_code_state *cs)
{
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        if (cs->active_tools[e] != (li_reg.global_tools[e] | cs->local_tools[e])) {
            return true;
        }
    }
    return false;
}

/* li_code_state_refresh() as of a moment when `global` were the global
 * tools of each event and the local ones cs's now; NULL: a moment when no
 * tool wanted any event. */
static void
refresh_as_of(li_code_state *cs, const uint8_t *global)
{
    li_dispatch_changed();
    cs->refresh_pending = false;
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        uint8_t now = global != NULL ? global[e] | cs->local_tools[e] : 0;
        uint8_t changed = cs->active_tools[e] ^ now;
        for (int tool = 0; changed != 0; tool++, changed >>= 1) {
            if (changed & 1) {
                forget_disabled(cs, e, tool);
            }
        }
        cs->active_tools[e] = now;
    }
}

void
li_code_state_refresh(li_code_state *cs)
{
    refresh_as_of(cs, li_reg.global_tools);
}

void
li_code_state_refresh_unwanted(li_code_state *cs)
{
    refresh_as_of(cs, NULL);
}

void
li_code_state_set_local(li_code_state *cs, int tool, li_event_set events)
{
    uint8_t bit = (uint8_t)(1 << tool);
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        cs->local_tools[e] &= (uint8_t)~bit;
        if (events & LI_EVENT_BIT(e)) {
            cs->local_tools[e] |= bit;
        }
    }
    /* CPython instruments the code object at once. */
    li_code_state_refresh(cs);
    if (li_has_local_events(cs)) {
        link_to(&local_codes, cs, LOCAL_LINKS);
    }
    else {
        unlink_from(&local_codes, cs, LOCAL_LINKS);
    }
}

li_event_set
li_code_state_local(const li_code_state *cs, int tool)
{
    li_event_set events = 0;
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        if (cs->local_tools[e] & (1 << tool)) {
            events |= LI_EVENT_BIT(e);
        }
    }
    return events;
}

li_event_set
li_global_events(void)
{
    return li_reg.global_events;
}

li_event_set
li_wanted_events(const li_code_state *cs)
{
    li_event_set events = li_global_events();
    if (cs != NULL) {
        for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
            if (cs->local_tools[e]) {
                events |= LI_EVENT_BIT(e);
            }
        }
    }
    return events;
}

int
li_code_state_disable(li_code_state *cs, int event, Py_ssize_t unit, int tool)
{
    assert(event >= 0 && event < LI_MARK_COUNT);
    assert(unit >= 0 && unit < cs->n_units);
    if (cs->disable_epoch != li_reg.disable_epoch) {
        /* restart_events() ran since the last mark: forget the old marks. */
        for (int e = 0; e < LI_MARK_COUNT; e++) {
            if (cs->disabled[e] != NULL) {
                memset(cs->disabled[e], 0, (size_t)cs->n_units);
            }
        }
        cs->disable_epoch = li_reg.disable_epoch;
    }
    if (cs->disabled[event] == NULL) {
        cs->disabled[event] = PyMem_Calloc((size_t)cs->n_units, 1);
        if (cs->disabled[event] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    cs->disabled[event][unit] |= (uint8_t)(1 << tool);
    link_to(&marked_codes, cs, MARKED_LINKS);
    li_reg.marked = true;
    li_reg.marked_epoch = li_reg.disable_epoch;
    li_reg.disables++;
    li_dispatch_changed();
    return 0;
}
