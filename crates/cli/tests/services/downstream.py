"""A downstream for the egress tests: answers every POST with the path and
body it received. Calls to /inventory wait (up to 20 s) until BARRIER of
them are waiting at once, so that the service's calls interleave.

Usage: downstream.py PORT BARRIER
"""

import http.server
import json
import sys
import threading

PORT, BARRIER = int(sys.argv[1]), int(sys.argv[2])
GATE = threading.Barrier(BARRIER) if BARRIER > 1 else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length).decode()
        if GATE is not None and self.path.endswith("/inventory"):
            try:
                GATE.wait(timeout=20)
            except threading.BrokenBarrierError:
                pass
        answer = json.dumps({"path": self.path, "got": body}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
