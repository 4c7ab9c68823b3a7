"""hello: the smallest app berth can run. A standard-library HTTP/1.1 server with keep-alive.

- `GET /` answers `hello from release <BERTH_RELEASE> instance <BERTH_INSTANCE>: <GREETING>`
- `GET /health/ready` answers 200 `ok`
- anything else is 404

It binds 127.0.0.1:$PORT, as every berth service does, and logs one line at start so
`berth logs` has something to show.
"""

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))
RELEASE = os.environ.get("BERTH_RELEASE", "dev")
INSTANCE = os.environ.get("BERTH_INSTANCE", "0")
GREETING = os.environ.get("GREETING", "hello")
BODY = f"hello from release {RELEASE} instance {INSTANCE}: {GREETING}\n".encode()

# One thread per connection; small stacks keep the address space within memory_max.
threading.stack_size(512 * 1024)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, send_body):
        if self.path == "/":
            status, text = 200, BODY
        elif self.path == "/health/ready":
            status, text = 200, b"ok\n"
        else:
            status, text = 404, b"not found\n"
        self.send_response(status)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        if send_body:
            self.wfile.write(text)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True


try:
    server = Server(("127.0.0.1", PORT), Handler)
except OSError as err:
    print(f"hello: cannot listen on 127.0.0.1:{PORT}: {err}", file=sys.stderr, flush=True)
    sys.exit(1)
print(f"hello: release {RELEASE} instance {INSTANCE} listening on 127.0.0.1:{PORT}", flush=True)
server.serve_forever()
