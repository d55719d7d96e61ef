#!/usr/bin/env python3
"""A small shop service in Python, the any-language example of reprise.

    shop.py shop --listen HOST:PORT --payments URL --inventory HOST:PORT
    shop.py payments --listen HOST:PORT [--cert FILE --key FILE]

`shop` serves `POST /checkout` (JSON `{"order": ..., "sku": ..., "amount":
N}`). For each call it makes two downstream calls, as a real service
would: a gRPC call to the inventory (`reprise.test.v1.Echo/Unary`, the
test suite's echo service, over plaintext HTTP/2 through `grpcio`) and an
HTTPS JSON call to the payments service (`POST /charge` through
`requests`). Both clients reach their downstreams through the standard
proxy variables (`HTTPS_PROXY`, `grpc_proxy`, `NO_PROXY`) and trust the
CAs named by `REQUESTS_CA_BUNDLE`, so `reprise record --egress` and
`reprise test` see them without a change to this file.

It propagates W3C trace context as OpenTelemetry's instrumentation does:
each outbound call carries the inbound call's trace id with a new span id,
and its `tracestate`. (A real service gets this from one line of setup:
`opentelemetry-instrument python shop.py ...`; this file does it by hand
so that it needs only `requests` and `grpcio`.)

Variants, for showing what `reprise test` reports (environment):
  SHOP_CHARGE_DELTA=N   charge N more than asked (a changed write)
  SHOP_EXTRA_CALL=1     also POST /audit to payments (an extra call)
  SHOP_DIRECT=HOST:PORT also open a TCP connection there directly, around
                        the proxy (an escape attempt)

`payments` serves `POST /charge` and `POST /audit` over HTTPS (with
`--cert`/`--key`) or HTTP: the answer names the order and the amount.
With `SHOP_PAYMENTS_BARRIER=N` in its environment, each `/charge` waits
(up to 20 s) until N of them are waiting at once, so that N checkouts are
in flight together and their downstream calls interleave (the tests use
it to record under real concurrency).

`inventory` serves `reprise.test.v1.Echo/Unary` over h2c with `grpcio`
(the note's text upper-cased, its number kept), as the test suite's echo
service does: the shop's other dependency, for sessions outside the tests.
"""

import argparse
import json
import os
import re
import secrets
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
INVENTORY_METHOD = "/reprise.test.v1.Echo/Unary"


def split_addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def child_context(headers):
    """The trace headers of an outbound call made while serving `headers`."""
    match = TRACEPARENT.fullmatch((headers.get("traceparent") or "").strip())
    if not match:
        return {}
    context = {"traceparent": f"00-{match[1]}-{secrets.token_hex(8)}-{match[3]}"}
    if headers.get("tracestate"):
        context["tracestate"] = headers.get("tracestate")
    return context


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_note(text, number):
    """`reprise.test.v1.Note{text, number}` in protobuf wire format."""
    data = text.encode()
    return b"\x0a" + varint(len(data)) + data + b"\x10" + varint(number)


def read_varint(data, i):
    """The varint at `data[i:]` and the index after it."""
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def decode_note(data):
    """`reprise.test.v1.Note{text, number}` from protobuf wire format;
    absent fields are empty / 0, unknown ones skipped."""
    text, number, i = "", 0, 0
    while i < len(data):
        key, i = read_varint(data, i)
        if key & 7 == 0:
            value, i = read_varint(data, i)
            if key >> 3 == 2:
                number = value
        elif key & 7 == 2:
            length, i = read_varint(data, i)
            if key >> 3 == 1:
                text = data[i : i + length].decode(errors="replace")
            i += length
        else:
            break
    return text, number


class Shop:
    def __init__(self, payments, inventory):
        import grpc
        import requests

        self.payments = payments.rstrip("/")
        self.requests = requests
        self.sessions = threading.local()
        channel = grpc.insecure_channel(inventory)
        self.reserve = channel.unary_unary(INVENTORY_METHOD)
        self.delta = int(os.environ.get("SHOP_CHARGE_DELTA", "0"))
        self.extra = os.environ.get("SHOP_EXTRA_CALL") == "1"
        self.direct = os.environ.get("SHOP_DIRECT")

    def session(self):
        if not hasattr(self.sessions, "s"):
            self.sessions.s = self.requests.Session()
        return self.sessions.s

    def checkout(self, order, headers):
        context = child_context(headers)
        sku = str(order.get("sku", ""))
        number = int(order.get("quantity", 1))
        reply = self.reserve(
            encode_note(sku, number), metadata=list(context.items()), timeout=10
        )
        amount = int(order.get("amount", 0)) + self.delta
        charge = self.session().post(
            f"{self.payments}/charge",
            json={"order": order.get("order"), "amount": amount},
            headers=context,
            timeout=10,
        )
        charge.raise_for_status()
        if self.extra:
            self.session().post(
                f"{self.payments}/audit",
                json={"order": order.get("order")},
                headers=context,
                timeout=10,
            ).raise_for_status()
        if self.direct:
            try:
                socket.create_connection(split_addr(self.direct), timeout=1).close()
            except OSError:
                pass
        return {
            "order": order.get("order"),
            "reserved": decode_note(reply)[0],
            "payment": charge.json(),
        }


def serve_inventory(listen):
    """The inventory: `Echo/Unary` answered with the note's text upper-cased."""
    from concurrent import futures

    import grpc

    def unary(request, context):
        text, number = decode_note(request)
        return encode_note(text.upper(), number)

    handler = grpc.method_handlers_generic_handler(
        "reprise.test.v1.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(unary)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(listen)
    server.start()
    print(f"inventory listening on {listen}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    return 0


def handler_for(answer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send(200, {"ok": True} if self.path == "/health" else {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                status, reply = answer(self.path, body, self.headers)
            except Exception as error:  # the caller sees why, as a real service would
                status, reply = 502, {"error": f"{type(error).__name__}: {error}"}
            self.send(status, reply)

        def send(self, status, reply):
            data = json.dumps(reply, sort_keys=True).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["shop", "payments", "inventory"])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--payments")
    parser.add_argument("--inventory")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    if args.role == "inventory":
        return serve_inventory(args.listen)
    if args.role == "shop":
        if not args.payments or not args.inventory:
            parser.error("shop needs --payments and --inventory")
        shop = Shop(args.payments, args.inventory)

        def answer(path, body, headers):
            if path != "/checkout":
                return 404, {"error": "not found"}
            return 200, shop.checkout(body, headers)
    else:
        waiting = int(os.environ.get("SHOP_PAYMENTS_BARRIER", "0"))
        gate = threading.Barrier(waiting) if waiting > 1 else None

        def answer(path, body, headers):
            if path == "/charge":
                if gate is not None:
                    try:
                        gate.wait(timeout=20)
                    except threading.BrokenBarrierError:
                        gate.reset()
                order, amount = body.get("order"), body.get("amount")
                return 200, {"id": f"pay-{order}", "order": order, "amount": amount}
            if path == "/audit":
                return 200, {"logged": body.get("order")}
            return 404, {"error": "not found"}

    server = ThreadingHTTPServer(split_addr(args.listen), handler_for(answer))
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"{args.role} listening on {args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
