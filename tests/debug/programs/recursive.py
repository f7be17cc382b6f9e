def walk(n, depth):
    total = 0
    for i in range(n):
        try:
            raise KeyError(i)
        except KeyError:
            total += 1
    if depth:
        total += walk(n, depth - 1)
        if depth == 1:
            total += 100
    return total


def main():
    first = walk(3, 3)
    second = walk(3, 2)
    print("walked", first, second)


main()
