"""The example app of deploy/docker/Dockerfile.app: a WSGI service with a leak.

Every request's body is kept in a module-level list that nothing empties (remember()),
so the service grows by what it is sent; GET / tells how much it holds. Standard library
only (wsgiref), on port 8000. Replace it with your own app.
"""

import os
from wsgiref.simple_server import make_server

_kept = []


def remember(body: bytes) -> None:
    _kept.append(bytes(body) + b"\0" * 4096)  # the leak: every request, kept forever


def app(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    remember(environ["wsgi.input"].read(size) if size else b"")
    text = f"kept {len(_kept)} requests\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"example app on port {port}, pid {os.getpid()}", flush=True)
    make_server("0.0.0.0", port, app).serve_forever()
