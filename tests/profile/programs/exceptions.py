"""Exceptions raised through Python and C frames, caught at several depths."""


def deep(n):
    if n == 0:
        raise ValueError("bottom")
    return deep(n - 1)


def caught_inside():
    try:
        deep(5)
    except ValueError:
        return "caught"


def convert(text):
    try:
        return int(text)
    except ValueError:
        return None


def cleanup(n):
    try:
        try:
            deep(n)
        finally:
            len("finally")
    except ValueError as exc:
        return str(exc)


def main():
    for _ in range(10):
        caught_inside()
    [convert(t) for t in ("1", "x", "22", "", "3")]
    for n in range(4):
        cleanup(n)
    try:
        {}["missing"]
    except KeyError:
        pass


main()
