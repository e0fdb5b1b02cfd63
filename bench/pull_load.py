"""A pull load: N keep-alive connections GETting one URL over and over for a fixed time.

    python3 bench/pull_load.py URL SECONDS CONNECTIONS    prints one JSON line

Why not wrk: wrk reads responses 8 KiB at a time and parses every byte of the body, so at
these speeds a blob pull measures wrk's read loop (it reaches the same ~2 GiB/s against nginx,
Distribution and Wharf alike). This client receives bodies with recv_into a 1 MiB buffer and
looks at nothing but the headers, so the server and the kernel are what is measured. Each
connection runs in its own thread; the threads hold Python's lock only between receives.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.parse

BUFFER = 1024 * 1024


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.requests = 0
        self.errors = 0


def read_head(sock: socket.socket, pending: bytearray) -> tuple[int, int, bytearray]:
    """Reads a response head; returns its status, Content-Length and the body bytes read
    with it."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ConnectionError("the response has no Content-Length")
    return status, length, bytearray(rest)


def connection(host: str, port: int, target: str, deadline: float, stats: Stats) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    received = requests = errors = 0
    sock = None
    while time.monotonic() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection((host, port))
            sock.sendall(request)
            status, length, body = read_head(sock, bytearray())
            received += len(body)
            left = length - len(body)
            while left > 0 and time.monotonic() < deadline:
                n = sock.recv_into(view, min(left, BUFFER))
                if n == 0:
                    raise ConnectionError("the server closed the connection mid-body")
                received += n
                left -= n
            if left > 0:
                break  # the time is up mid-body: what arrived counts, the response does not
            requests += 1
            if status != 200:
                errors += 1
        except OSError:
            errors += 1
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    with stats.lock:
        stats.bytes += received
        stats.requests += requests
        stats.errors += errors


def main() -> int:
    url, seconds, connections = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    parsed = urllib.parse.urlsplit(url)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    stats = Stats()
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=connection,
                                args=(parsed.hostname, parsed.port, target, deadline, stats))
               for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(json.dumps({"bytes": stats.bytes, "requests": stats.requests, "errors": stats.errors,
                      "duration_s": elapsed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
