import sys
import threading


def worker(name, out):
    total = 0
    for i in range(3):
        total += i
    out[name] = total


def main():
    out = {}
    if sys.argv[1:] == ["inline"]:
        worker("w", out)
    else:
        t = threading.Thread(target=worker, args=("w", out), name="worker-thread")
        t.start()
        t.join()
    print("out", out)


main()
