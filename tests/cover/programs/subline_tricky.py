def deco(flag):
    return lambda fn: fn if flag else None


@deco(True)
@deco(1 > 0 and True)
def nested(xs, limit):
    return [[y for y in x if y and y < limit] for x in xs if x is not None]


def multi(a, b, c):
    if (a and
            b or not
            c):
        return 1
    return 0


def lambdas(p, q):
    return (lambda r: (lambda s: s or r)(r and q))(p)


def unmatched(x):
    y = x and x > 1
    return True and y


nested([[1, 5], None, []], 3)
multi(True, True, False)
multi(False, False, False)
lambdas(1, 0)
lambdas(0, 1)
unmatched(0)
