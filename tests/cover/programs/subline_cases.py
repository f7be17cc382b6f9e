def both(a, b):
    if a and b:
        return 1
    return 0


def either(a, b):
    return "yes" if a or b else "no"


def loop(items):
    while items and items[0] is not None:
        items.pop(0)


both(True, False)
both(False, False)
either(False, True)
loop([1, None])


def pick(c):
    value = "a" if c else "b"
    return value


def total(xs):
    for x in xs:
        pass
    if xs:
        return len(xs)


pick(True)
total([1])
