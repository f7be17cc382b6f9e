import os
import sys

def work(n):
    return [i for i in range(n) if i % 2]

work(10)
print("out", flush=True)
print("err", file=sys.stderr, flush=True)
how = sys.argv[1] if len(sys.argv) > 1 else "return"
if how == "exit3":
    sys.exit(3)
elif how == "raise":
    raise KeyError("boom")
elif how == "os_exit":
    os._exit(7)
elif how == "argv":
    print(sys.argv)
print("end")
