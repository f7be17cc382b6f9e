import operator

OPERATIONS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def apply(symbol, a, b):
    try:
        func = OPERATIONS[symbol]
    except KeyError:
        raise SystemExit("unknown operation %r" % symbol)
    return func(a, b)


def tokens(text):
    for part in text.split():
        if part.isdigit():
            yield int(part)
        else:
            yield part
