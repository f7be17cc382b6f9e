import os
import threading

def in_thread(results, n):
    if n > 1:
        results.append(n * 2)
    else:
        results.append(0)

def in_child():
    value = 0
    for i in range(3):
        value += i
    return value

results = []
threads = [threading.Thread(target=in_thread, args=(results, n)) for n in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
pid = os.fork()
if pid == 0:
    in_child()
    os._exit(0)
os.waitpid(pid, 0)
print(sorted(results))
