import sys


def classify(n):
    if n > 5:
        return "big"
    return "small"


print(classify(int(sys.argv[1])))
