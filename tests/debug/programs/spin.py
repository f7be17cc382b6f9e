import threading
import time

state = {"stop": False, "passes": 0}


def spin():
    while not state["stop"]:
        state["passes"] += 1
        time.sleep(0.001)
    return state["passes"]


def helper():
    time.sleep(0.05)
    breakpoint()
    state["helper"] = "done"


def main():
    t = threading.Thread(target=helper, name="helper")
    t.start()
    passes = spin()
    t.join()
    print("spun", passes > 0)


main()
