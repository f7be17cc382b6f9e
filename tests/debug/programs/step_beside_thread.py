"""The main thread steps through work() while a worker thread runs work()
past its breakpoint."""
import threading

ev = threading.Event()
done = threading.Event()

def work(tag):
    x = tag
    if tag == "main":
        ev.set()
        done.wait(5)
    return x

def worker():
    ev.wait(5)
    work("worker")
    done.set()

t = threading.Thread(target=worker, daemon=True)
t.start()
work("main")
t.join()
print("end")
