"""A small service with a real leak, for the demo.

It "handles requests" in a loop: each request parses a payload and keeps a
per-request record in a module-level cache that nothing ever evicts. That
cache (in remember()) is the leak; the rest is steady work whose garbage
the GC collects.
"""
import os
import sys
import time

_seen_requests = {}


def remember(request_id: int, payload: bytes) -> None:
    # The leak: every request's payload stays reachable forever.
    _seen_requests[request_id] = payload.hex()


def handle(request_id: int) -> int:
    payload = os.urandom(2048)
    scratch = [payload[i : i + 64] for i in range(0, len(payload), 64)]  # freed each request
    remember(request_id, payload)
    return len(scratch)


def main() -> None:
    rate = float(os.environ.get("LEAKY_REQUESTS_PER_SECOND", "200"))
    print(f"leaky_service: pid {os.getpid()}, {rate:.0f} requests/s", flush=True)
    n = 0
    while True:
        for _ in range(int(rate / 10) or 1):
            n += 1
            handle(n)
        time.sleep(0.1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
