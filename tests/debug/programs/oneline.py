def f():
    x = 0
    for i in range(3): x += i
    while x < 10: x += 1
    return x


f()
