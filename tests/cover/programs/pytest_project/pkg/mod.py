def sign(n):
    if n > 0:
        return 1
    elif n < 0:
        return -1
    return 0


def label(n):
    return "even" if n % 2 == 0 else "odd"


def unused():
    return None
