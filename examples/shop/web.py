"""shop web: a tiny JSON API. Orders are files in $BERTH_SHARED/queue, picked up by the worker."""

import json
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))
RELEASE = os.environ.get("BERTH_RELEASE", "dev")
# BERTH_SHARED is the app's directory that survives releases.
QUEUE = os.path.join(os.environ.get("BERTH_SHARED", "."), "queue")
os.makedirs(os.path.join(QUEUE, "new"), exist_ok=True)
os.makedirs(os.path.join(QUEUE, "done"), exist_ok=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/api/health":
            self.reply(200, {"ok": True})
        elif self.path == "/api/orders":
            done = sorted(os.listdir(os.path.join(QUEUE, "done")))
            pending = sorted(os.listdir(os.path.join(QUEUE, "new")))
            self.reply(200, {"release": RELEASE, "done": done, "pending": pending})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/api/orders":
            return self.reply(404, {"error": "not found"})
        length = int(self.headers.get("content-length", "0"))
        order = self.rfile.read(length) or b"{}"
        order_id = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        tmp = os.path.join(QUEUE, f".{order_id}")
        with open(tmp, "wb") as f:
            f.write(order)
        os.rename(tmp, os.path.join(QUEUE, "new", order_id))
        self.reply(201, {"id": order_id})

    def log_message(self, fmt, *args):
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}")


print(f"shop web: release {RELEASE} on 127.0.0.1:{PORT}, queue {QUEUE}")
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
