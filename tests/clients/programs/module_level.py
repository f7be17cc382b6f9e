"""A script whose work is mostly module-level code."""

import collections
import functools
import sys

LIMIT = 5
GREETING = (
    "hello"
    " world"
)

Point = collections.namedtuple("Point", "x y")


def decorate(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs) * 2

    return wrapper


class Shape:
    """Base class with a class attribute computed at class creation."""

    sides = 0
    registry = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Shape.registry.append(cls.__name__)

    def __init__(self, name):
        self.name = name

    @property
    def label(self):
        return "%s/%d" % (self.name, self.sides)

    def describe(self):
        return "%s with %d sides" % (self.name, self.sides)

    def unused(self):
        return "never called"


class Square(Shape):
    sides = 4
    if LIMIT > 3:
        big = True
    else:
        big = False


class Triangle(Shape):
    sides = 3


@decorate
def area(width, height):
    return width * height


def total(items):
    n = 0
    for x in items:
        n += x
    return n


results = []
for i in range(LIMIT):
    if i % 2:
        results.append(i)
    elif i == 4:
        continue
    else:
        results.append(-i)
else:
    results.append(100)

count = 0
while count < 3:
    count += 1
    if count == 10:
        break
else:
    finished = True

try:
    {}["missing"]
except KeyError:
    handled = True
else:
    handled = False
finally:
    cleaned = True

try:
    value = int("42")
except ValueError:
    value = None
else:
    value += 1

squares = [n * n for n in range(LIMIT) if n % 2]
lookup = {n: str(n) for n in squares}
doubled = list(map(lambda v: v * 2, squares))

with open(__file__) as source:
    first = source.readline()

if sys.version_info >= (3, 0):
    modern = True
else:
    modern = False


def main():
    shapes = [Square("sq"), Triangle("tri")]
    for shape in shapes:
        print(shape.describe(), shape.label)
    print(area(2, 3), total(results), handled, value, lookup, doubled)
    print(Point(1, 2), Shape.registry, finished, first.strip()[:3])


if __name__ == "__main__":
    main()
else:
    print("imported, not run")
