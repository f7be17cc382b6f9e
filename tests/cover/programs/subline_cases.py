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
