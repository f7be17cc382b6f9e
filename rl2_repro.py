import sys
from lowimpact import monitoring as M
E = M.events
log = []
def helper(i):
    return i * 2
def work(n):
    total = 0
    for i in range(n):
        total += helper(i)
        total += 1
    return total
M.use_tool_id(2, "dbg")
traced = set()
def trace(code):
    if code not in traced:
        M.set_local_events(2, code, E.LINE | E.JUMP | E.PY_RETURN | E.PY_YIELD)
        traced.add(code)
state = {"break": "helper"}
def start(code, off):
    if code.co_name == state["break"]:
        trace(code); return None
    return M.DISABLE
def line(code, ln):
    log.append((code.co_name, ln))
    if code.co_name == state["break"] and ln in (6, 11):
        log.append("STOP")
        if code.co_name == "helper":
            state["break"] = "work"
        else:
            state["break"] = None
        M.restart_events()
        f = sys._getframe(1)
        while f is not None:
            if f.f_code.co_name == state["break"]:
                trace(f.f_code); from lowimpact import _engine; log.append(("reached", _engine._stats()["reached_threads"]))
            f = f.f_back
        return None
    return M.DISABLE
for ev, cb in ((E.PY_START, start), (E.PY_RESUME, start), (E.LINE, line), (E.JUMP, lambda *a: M.DISABLE), (E.PY_RETURN, lambda *a: M.DISABLE), (E.PY_YIELD, lambda *a: M.DISABLE), (E.PY_UNWIND, lambda *a: None), (E.RAISE, lambda *a: None), (E.PY_THROW, lambda *a: None)):
    M.register_callback(2, ev, cb)
M.set_events(2, E.PY_START | E.PY_RESUME | E.PY_THROW | E.PY_UNWIND | E.RAISE)
print(work(3))
print(log)
