"""A class-heavy program: properties, dunders, inheritance, super(),
dataclasses and methods of C types."""

import dataclasses


class Shape:
    def __init__(self, name):
        self.name = name

    def area(self):
        raise NotImplementedError

    def __lt__(self, other):
        return self.area() < other.area()

    def __repr__(self):
        return "%s(%.1f)" % (self.name, self.area())


class Rect(Shape):
    def __init__(self, w, h):
        super().__init__("rect")
        self.w, self.h = w, h

    def area(self):
        return self.w * self.h


class Square(Rect):
    def __init__(self, side):
        super().__init__(side, side)

    @property
    def side(self):
        return self.w


@dataclasses.dataclass
class Point:
    x: int
    y: int

    def moved(self, dx):
        return Point(self.x + dx, self.y)


def main():
    shapes = [Rect(i, i + 1) if i % 2 else Square(i) for i in range(40)]
    shapes.sort()
    names = {}
    for shape in shapes:
        names.setdefault(shape.name, []).append(repr(shape))
    sides = [s.side for s in shapes if isinstance(s, Square)]
    p = Point(0, 0)
    for i in range(30):
        p = p.moved(i)
    " ".join(str(s) for s in sides).split()
    return p == Point(435, 0)


main()
