def fail(n):
    if n > 2:
        raise ValueError("too big: %d" % n)
    return n


def work():
    total = 0
    for i in range(5):
        total += i
        total *= 2
    print("total", total)
    try:
        fail(3)
    except ValueError as exc:
        print("caught", exc)
    return total


work()
fail(7)
