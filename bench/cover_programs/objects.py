"""An object-heavy program: a small inventory simulation with classes,
properties, dict/list churn and many short methods."""

import random
import sys


class Item:
    __slots__ = ("name", "price", "count")

    def __init__(self, name, price, count):
        self.name = name
        self.price = price
        self.count = count

    @property
    def value(self):
        return self.price * self.count

    def take(self, n):
        if n > self.count:
            n = self.count
        self.count -= n
        return n


class Store:
    def __init__(self):
        self.items = {}
        self.log = []

    def add(self, name, price, count):
        item = self.items.get(name)
        if item is None:
            item = self.items[name] = Item(name, price, count)
        else:
            item.count += count
            if price > item.price:
                item.price = price
        return item

    def order(self, name, n):
        item = self.items.get(name)
        if item is None or item.count == 0:
            self.log.append(("missing", name))
            return 0
        got = item.take(n)
        self.log.append(("sold", name, got))
        return got

    def total(self):
        return sum(item.value for item in self.items.values() if item.count)


def simulate(rounds, seed=1):
    rng = random.Random(seed)
    names = ["item%d" % i for i in range(200)]
    store = Store()
    sold = 0
    for _ in range(rounds):
        name = rng.choice(names)
        if rng.random() < 0.5:
            store.add(name, rng.randint(1, 100), rng.randint(1, 10))
        else:
            sold += store.order(name, rng.randint(1, 5))
        if len(store.log) > 1000:
            store.log.clear()
    return sold, store.total()


if __name__ == "__main__":
    print(simulate(int(sys.argv[1]) if len(sys.argv) > 1 else 300000))
