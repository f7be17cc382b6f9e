import asyncio


def count(n):
    for i in range(n):
        yield i * 10
    return "done"


def relay(n):
    result = yield from count(n)
    return result


async def fetch(x):
    await asyncio.sleep(0)
    value = x + 1
    return value


async def gather():
    total = 0
    for x in range(3):
        total += await fetch(x)
    return total


def main():
    items = list(relay(3))
    print("items", items)
    print("gather", asyncio.run(gather()))


main()
