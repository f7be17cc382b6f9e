"""Makes, runs and drops many functions compiled at run time (as
namedtuple, dataclasses or templates do), then says how many of their code
objects are still alive."""

import gc
import weakref


def make(i):
    namespace = {}
    exec(compile("def f(a):\n    return a + %d\n" % i, "<generated>", "exec"), namespace)
    namespace["f"](1)
    return weakref.ref(namespace["f"].__code__)


refs = [make(i) for i in range(2000)]
gc.collect()
print("alive", sum(ref() is not None for ref in refs))
done = True
