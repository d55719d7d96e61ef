#!/usr/bin/env python3
"""A small ledger service in Python over PostgreSQL and Redis, the service
the `--egress-db` tests of reprise record and replay.

    ledger.py           serve (until SIGINT/SIGTERM)
    ledger.py --init    create and seed the table, clear the cache, exit

Configuration (environment):
  LEDGER_PORT=N          port on 127.0.0.1 (LEDGER_HOST to change); 0 picks
                         a free one. Prints `listening on PORT` when ready.
  LEDGER_PG=CONNINFO     PostgreSQL, a libpq URL or conninfo string
  LEDGER_REDIS=URL       Redis, `redis://[:PASSWORD@]HOST:PORT[/DB]`
                         (`?protocol=3` for RESP3)

Endpoints:
  GET  /users/{id}        the user, from Redis (`GET user:{id}`) or, on a
                          miss, from PostgreSQL, then cached for 60 s
  POST /users/{id}/visit  adds LEDGER_VISIT_DELTA to the user's visits in a
                          transaction, `INCR visits:total`, drops the cache
  GET  /health            answers without touching a database

Variants (environment):
  LEDGER_VISIT_DELTA=N   visits added per call (default 1; a "different
                         build" uses 2: a changed write)
  LEDGER_SQLCOMMENTER=1  every SQL statement ends with a sqlcommenter
                         comment carrying the inbound call's `traceparent`
                         (and `tracestate`), as OpenTelemetry's sqlcommenter
                         does: the link from a statement to its call
  LEDGER_PREPARE=1       psycopg prepares every statement (`prepare=True`):
                         named statements `_pg3_N`, parsed once per
                         connection and reused; otherwise nothing is
                         prepared (unnamed statements only, every call)

Needs psycopg (3) and redis (redis-py) from PyPI (scripts/setup-tests.sh).
"""

import json
import os
import queue
import re
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import redis

USER_PATH = re.compile(r"/users/(\d{1,9})")
VISIT_PATH = re.compile(r"/users/(\d{1,9})/visit")
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
CACHE_SECONDS = 60
POOL_SIZE = 4

SEED = [(1, "ada"), (2, "grace"), (3, "linus"), (4, "barbara"), (5, "ken")]


def sqlcomment(sql, headers):
    """`sql` with the sqlcommenter comment for the inbound call's trace
    context appended (keys sorted, keys and values URL-encoded, `'`
    escaped), ready for psycopg with parameters; unchanged when there is
    none or it has a comment already (the specification says never to
    touch such a statement)."""
    if headers is None or "--" in sql or "/*" in sql:
        return sql
    pairs = {}
    traceparent = (headers.get("traceparent") or "").strip()
    if TRACEPARENT.fullmatch(traceparent):
        pairs["traceparent"] = traceparent
        if headers.get("tracestate"):
            pairs["tracestate"] = headers.get("tracestate").strip()
    if not pairs:
        return sql
    fields = ",".join(
        "{}='{}'".format(
            urllib.parse.quote(key, safe=""),
            urllib.parse.quote(value, safe="").replace("'", "\\'"),
        )
        for key, value in sorted(pairs.items())
    )
    # psycopg reads `%` as a placeholder: the URL-encoded comment's `%`s
    # are doubled so that the server gets them as they are.
    return f"{sql} /*{fields.replace('%', '%%')}*/"


class Ledger:
    """The service's state: a small pool of PostgreSQL connections (a
    request takes one and gives it back, so prepared statements live on)
    and redis-py's client (thread-safe, with its own pool)."""

    def __init__(self):
        self.conninfo = os.environ["LEDGER_PG"]
        self.cache = redis.Redis.from_url(os.environ["LEDGER_REDIS"])
        self.delta = int(os.environ.get("LEDGER_VISIT_DELTA", "1"))
        self.commenter = os.environ.get("LEDGER_SQLCOMMENTER") == "1"
        self.prepare = os.environ.get("LEDGER_PREPARE") == "1"
        self.idle = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(POOL_SIZE)

    def connect(self):
        conn = psycopg.connect(self.conninfo, autocommit=True)
        if not self.prepare:
            # psycopg prepares a statement by itself after 5 runs: off, so
            # that the plain variant never names a statement.
            conn.prepare_threshold = None
        return conn

    def run(self, work):
        """`work(conn)` on a pooled connection; a broken one is dropped."""
        with self.slots:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                conn = self.connect()
            try:
                result = work(conn)
            except BaseException:
                conn.close()
                raise
            if conn.closed:
                return result
            self.idle.put(conn)
            return result

    def execute(self, conn, sql, params, headers):
        sql = sqlcomment(sql, headers) if self.commenter else sql
        return conn.execute(sql, params, prepare=True if self.prepare else None)

    def user(self, user_id, headers):
        key = f"user:{user_id}"
        cached = self.cache.get(key)
        if cached is not None:
            return 200, {**json.loads(cached), "source": "cache"}
        row = self.run(
            lambda conn: self.execute(
                conn,
                "SELECT id, name, visits FROM users WHERE id = %s",
                (user_id,),
                headers,
            ).fetchone()
        )
        if row is None:
            return 404, {"error": f"no user {user_id}"}
        user = {"id": row[0], "name": row[1], "visits": row[2]}
        self.cache.set(key, json.dumps(user, sort_keys=True), ex=CACHE_SECONDS)
        return 200, {**user, "source": "db"}

    def visit(self, user_id, headers):
        def update(conn):
            with conn.transaction():
                return self.execute(
                    conn,
                    "UPDATE users SET visits = visits + %s WHERE id = %s RETURNING visits",
                    (self.delta, user_id),
                    headers,
                ).fetchone()

        row = self.run(update)
        if row is None:
            return 404, {"error": f"no user {user_id}"}
        total = self.cache.incr("visits:total")
        self.cache.delete(f"user:{user_id}")
        return 200, {"id": user_id, "visits": row[0], "total_visits": total}


def init():
    """Creates the table and puts the seed users back as they were (visits
    0), and clears what the service caches: a known state to record from."""
    with psycopg.connect(os.environ["LEDGER_PG"], autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS users("
            "id integer PRIMARY KEY, name text NOT NULL, visits integer NOT NULL DEFAULT 0)"
        )
        with conn.transaction():
            for user_id, name in SEED:
                conn.execute(
                    "INSERT INTO users(id, name, visits) VALUES (%s, %s, 0) "
                    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, visits = 0",
                    (user_id, name),
                )
    if os.environ.get("LEDGER_REDIS"):
        cache = redis.Redis.from_url(os.environ["LEDGER_REDIS"])
        cache.delete("visits:total", *(f"user:{user_id}" for user_id, _ in SEED))
    print(f"initialised {len(SEED)} users", flush=True)
    return 0


def handler_for(ledger):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/health":
                return self.send(200, {"ok": True})
            match = USER_PATH.fullmatch(self.path)
            if not match:
                return self.send(404, {"error": "not found"})
            self.answer(ledger.user, int(match[1]))

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            match = VISIT_PATH.fullmatch(self.path)
            if not match:
                return self.send(404, {"error": "not found"})
            self.answer(ledger.visit, int(match[1]))

        def answer(self, method, user_id):
            try:
                status, reply = method(user_id, self.headers)
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
    if sys.argv[1:] == ["--init"]:
        return init()
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    ledger = Ledger()
    host = os.environ.get("LEDGER_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, int(os.environ["LEDGER_PORT"])), handler_for(ledger))
    server.daemon_threads = True
    # SIGTERM (how tests and `reprise test` stop it) ends it as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
