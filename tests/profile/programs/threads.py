"""Threads running the same functions at once: 4 workers, each calling
work() once and leaf() 500 times, with the GIL switched often."""

import sys
import threading

sys.setswitchinterval(1e-5)


def leaf(i):
    return i * i


def work(results, index):
    total = 0
    for i in range(500):
        total += leaf(i)
    results[index] = total


def main():
    results = [0] * 4
    threads = [threading.Thread(target=work, args=(results, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1


main()
