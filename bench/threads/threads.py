# threads.py: Python's thread micro-benchmark: threading.Thread start+join of
# an empty function, then messages through a queue.Queue(1024) from one thread
# to another. Usage: python3 threads.py SPAWNS MSGS. Prints one RESULT line.
import queue
import sys
import threading
import time

spawns = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
msgs = int(sys.argv[2]) if len(sys.argv) > 2 else 100000

t0 = time.monotonic()
for _ in range(spawns):
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
spawn_s = time.monotonic() - t0


def produce(q, n):
    for i in range(n):
        q.put(i)


q = queue.Queue(1024)
t0 = time.monotonic()
p = threading.Thread(target=produce, args=(q, msgs))
p.start()
for _ in range(msgs):
    q.get()
p.join()
chan_s = time.monotonic() - t0
print("RESULT spawn_per_s=%.1f msgs_per_s=%.1f" % (spawns / spawn_s, msgs / chan_s))
