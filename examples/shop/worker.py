"""shop worker: moves orders from $BERTH_SHARED/queue/new to done, one per tick."""

import os
import signal
import sys
import time

# BERTH_SHARED is the app's directory that survives releases.
QUEUE = os.path.join(os.environ.get("BERTH_SHARED", "."), "queue")
os.makedirs(os.path.join(QUEUE, "new"), exist_ok=True)
os.makedirs(os.path.join(QUEUE, "done"), exist_ok=True)
running = True


def stop(signum, frame):
    global running
    running = False
    print("worker: stopping after the current order")


signal.signal(signal.SIGTERM, stop)
print(f"worker: watching {QUEUE}")
while running:
    for name in sorted(os.listdir(os.path.join(QUEUE, "new"))):
        os.rename(os.path.join(QUEUE, "new", name), os.path.join(QUEUE, "done", name))
        print(f"worker: processed order {name}")
        break
    time.sleep(0.2)
sys.exit(0)
