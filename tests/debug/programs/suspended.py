def numbers():
    yield 1
    x = 2
    yield x


def main():
    g = numbers()
    first = next(g)
    mark = first
    second = next(g)
    print("got", mark, second)


main()
