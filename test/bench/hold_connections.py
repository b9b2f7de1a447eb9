#!/usr/bin/env python3
"""Hold N idle TCP connections open to HOST:PORT (an attacker's, or a crowd's,
idle sockets), reconnecting each one the server closes, until SIGTERM.

    hold_connections.py PORT COUNT [PER_ADDR]

Connections come from 127.0.0.2, 127.0.0.3, ... (PER_ADDR each, default 50),
so that a per-address limit does not refuse them.  Prints "holding COUNT"
on stderr once all are open.  Used by test/bench/webhook_bench.sh.
"""
import resource
import selectors
import signal
import socket
import sys
import time

port = int(sys.argv[1])
count = int(sys.argv[2])
per_addr = int(sys.argv[3]) if len(sys.argv) > 3 else 50
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < count + 64:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))

sel = selectors.DefaultSelector()
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)


def connect(i):
    s = socket.socket()
    s.bind(("127.0.0.%d" % (2 + i // per_addr), 0))
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        return False
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
    return True


held = sum(connect(i) for i in range(count))
print("holding %d" % held, file=sys.stderr, flush=True)
reconnects = 0
closed = []   # (when, i): reconnected a second later, not in a hot loop
while running:
    for key, _ in sel.select(timeout=0.2):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            closed.append((time.monotonic(), key.data))
    now = time.monotonic()
    while closed and now - closed[0][0] >= 1.0:
        _, i = closed.pop(0)
        reconnects += 1
        if not connect(i):
            closed.append((now, i))
print("reconnected %d times" % reconnects, file=sys.stderr, flush=True)
