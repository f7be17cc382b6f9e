def inner(v):
    breakpoint()
    w = v + 1
    return w


def outer():
    data = {"a": [1, 2], "b": "text"}
    result = inner(41)
    print("result", result)
    return data


outer()
