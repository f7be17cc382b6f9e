"""Code that first runs in threads other than the main one."""

import concurrent.futures
import threading

results = []
lock = threading.Lock()


def worker(n):
    total = 0
    for i in range(n):
        total += i * i
    with lock:
        results.append(total)


def pooled(n):
    if n % 2:
        return -n
    return n


class Task(threading.Thread):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def run(self):
        with lock:
            results.append(self.value * 10)


threads = [threading.Thread(target=worker, args=(n,)) for n in (3, 4, 5)]
threads.append(Task(7))
for t in threads:
    t.start()
for t in threads:
    t.join()

with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    pooled_results = list(pool.map(pooled, range(4)))

print(sorted(results), pooled_results)
