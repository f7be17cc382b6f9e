class I:
    def __init__(self, seqn):
        self.seqn = seqn
        self.i = 0
    def __iter__(self):
        return self
    def __next__(self):
        if self.i >= len(self.seqn): raise StopIteration
        v = self.seqn[self.i]
        self.i += 1
        return v


def guarded(x):
    try:
        if x: raise ValueError(x)
        return 1
    except ValueError:
        return 2


def reraiser(x):
    try:
        if x > 1: raise KeyError(x)
        return 0
    except ValueError:
        return 3


def gen(n):
    for i in range(n):
        if i > 1: raise RuntimeError("stop")
        yield i


print(list(I([1, 2])), guarded(0), guarded(1), reraiser(0))
try:
    reraiser(5)
except KeyError:
    pass
try:
    list(gen(5))
except RuntimeError:
    pass
