"""Functions that are first (and mostly only) called from module-level code.

A coverage tool turns LINE events on for a code object from its PY_START
callback; each of these first calls is the frame whose events must start at
once.
"""

import first_calls_helper


def called_once(n):
    total = 0
    for i in range(n):
        total += i
    return total


def recursive(n):
    if n <= 1:
        return 1
    return n * recursive(n - 1)


def outer(x):
    def inner(y):
        return y + 1

    return inner(x) * 2


def decorator(func):
    func.tagged = True
    return func


@decorator
def decorated():
    return "decorated"


def default_factory():
    return [1, 2, 3]


def with_default(items=default_factory()):
    return len(items)


def squared(v):
    return v * v


def raises_once():
    raise ValueError("first call raises")


def in_comprehension(v):
    return v + 100


def yields_once():
    yield 1
    yield 2


class Meta(type):
    def __new__(mcls, name, bases, ns):
        ns["made_by_meta"] = True
        return super().__new__(mcls, name, bases, ns)


class Described:
    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        return "descriptor %s" % self.name


class Thing(metaclass=Meta):
    attribute = Described()

    def __init__(self, v):
        self.v = v

    def method(self):
        return self.v * 3

    @classmethod
    def build(cls):
        return cls(7)

    @staticmethod
    def static(a):
        return -a

    def __repr__(self):
        return "Thing(%r)" % self.v


def never_called():
    return "not called"


result = called_once(5)
fact = recursive(4)
nested = outer(1)
size = with_default()
mapped = list(map(squared, [1, 2, 3]))
try:
    raises_once()
except ValueError as exc:
    caught = str(exc)
comprehended = [in_comprehension(v) for v in range(2)]
pulled = list(yields_once())
thing = Thing.build()
print(result, fact, nested, size, mapped, caught, comprehended, pulled)
print(thing.method(), Thing.static(2), repr(thing), thing.attribute, decorated())
print(first_calls_helper.KIND, first_calls_helper.helper_once(1), (lambda: "lambda")())
