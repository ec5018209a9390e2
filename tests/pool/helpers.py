"""What the pool tests share: many threads sending through one pool."""

from __future__ import annotations

import threading


def hammer(pool, threads: int, per_thread: int, payload, timeout: float = 100) -> list[int]:
    """`threads` threads each send `payload(thread, i)` for i < `per_thread` through `pool`, and
    check every reply is the payload uppercased. Returns the pool size seen after each request."""
    sizes, errors = [], []

    def worker(n):
        try:
            for i in range(per_thread):
                data = payload(n, i)
                reply = pool.request(data)
                if reply != data.upper():
                    errors.append(f"thread {n}, request {i}: wrong reply of {len(reply)} bytes")
                sizes.append(pool.size)
        except Exception as exc:  # reported from the test's thread, below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout)
    assert not any(w.is_alive() for w in workers), "request threads still running"
    assert not errors, errors[:3]
    assert len(sizes) == threads * per_thread
    return sizes
