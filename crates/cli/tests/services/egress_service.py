"""A service for the egress tests: for each POST it receives, it makes two
downstream calls, the first through HTTP_PROXY (urllib's ProxyHandler reads
it) to DOWNSTREAM, the second to ROUTE (a base URL, no proxy), each
carrying the inbound call's trace id in a new span (as OpenTelemetry's
instrumentation propagates it) and the inbound call's request id in its
body. It answers with what both downstream calls said.

Usage: egress_service.py PORT DOWNSTREAM_URL ROUTE_URL
"""

import http.server
import json
import os
import secrets
import sys
import urllib.error
import urllib.request

PORT, DOWNSTREAM, ROUTE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
PROXIED = urllib.request.build_opener(urllib.request.ProxyHandler())
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def child_context(headers):
    """traceparent/tracestate for a child span, as OpenTelemetry's
    propagator writes them: the same trace id, a new span id."""
    parent = headers.get("traceparent")
    out = {}
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            out["traceparent"] = "00-%s-%s-%s" % (parts[1], secrets.token_hex(8), parts[3])
            if headers.get("tracestate"):
                out["tracestate"] = headers["tracestate"]
        elif os.environ.get("PASS_BAD_TRACEPARENT"):
            out["traceparent"] = parent
    return out


def call(opener, url, request_id, context):
    body = json.dumps({"from": request_id}).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("content-type", "application/json")
    for name, value in context.items():
        request.add_header(name, value)
    try:
        with opener.open(request, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 599, str(error)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        request_id = self.headers.get("x-request-id", "")
        context = child_context(self.headers)
        first = call(PROXIED, DOWNSTREAM + "/inventory", request_id, context)
        second = call(DIRECT, ROUTE + "/charge", request_id, context)
        body = json.dumps({"id": request_id, "calls": [first, second]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
