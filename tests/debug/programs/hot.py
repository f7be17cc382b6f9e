import sys


def hot(n):
    total = 0
    for i in range(n):
        total += i % 7
        if total < 0:
            total = -total
    return total


def main():
    print("first", hot(int(sys.argv[1])))
    print("second", hot(int(sys.argv[1])))


main()
