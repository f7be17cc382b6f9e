def square(x):
    y = x * x
    return y


def total(n):
    acc = 0
    for i in range(n):
        acc += square(i)
    return acc


def main():
    result = total(4)
    print("result", result)
    values = [total(k) for k in range(3)]
    print("values", values)


main()
