import multiprocessing
import subprocess
import sys


def square(n):
    if n % 2:
        return n * n
    return -n


def in_pool(method):
    # close() and join(), not terminate(): workers killed by SIGTERM keep no
    # data, under coverage.py as under lowimpact.
    pool = multiprocessing.get_context(method).Pool(2)
    try:
        return pool.map(square, [1, 2, 3])
    finally:
        pool.close()
        pool.join()


def in_process(method):
    context = multiprocessing.get_context(method)
    process = context.Process(target=square, args=(5,))
    process.start()
    process.join()
    return process.exitcode


if __name__ == "__main__":
    methods = sys.argv[1:]
    if "subprocess" in methods:
        out = subprocess.run([sys.executable, "spawned_child.py", "7"], capture_output=True,
                             text=True, check=True).stdout
        print(out.strip())
    for method in ("spawn", "fork", "forkserver"):
        if method in methods:
            print(method, in_pool(method), in_process(method))
