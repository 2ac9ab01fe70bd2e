#!/usr/bin/env python3
"""Test infrastructure: the part of ClickHouse's HTTP interface meshlens' client uses, served
over chDB (the ClickHouse engine of a current release, embedded in Python as `chdb-core`).

It lets the crate's tests run their SQL on a current ClickHouse where only Debian's 18.16
server is installable. Usage: chdb_http_server.py DATA_DIR. It binds 127.0.0.1 on a free port
and prints that port on its first stdout line; it stops when stdin closes or on a signal.

What it serves, as clickhouse-server does:
  GET  /ping                  -> "Ok.\n"
  POST /?query=INSERT ... FORMAT F   with the rows as the body (the rows go through a temp
                              file and `INSERT ... FROM INFILE 'file' FORMAT F`)
  POST /  with the SQL as the body, or GET/POST /?query=SQL (the body then follows the query)
  other URL parameters: `database`, and settings (applied with SET for that request only);
  `wait_end_of_query` and the like are HTTP-layer options that an embedded engine has no use for.
  The answer is the query's output (TabSeparated unless the SQL names a FORMAT); an error is
  HTTP 500 with ClickHouse's `Code: N. DB::Exception: ...` text and the
  X-ClickHouse-Exception-Code header.

One chDB session (one data directory) serves every request, one request at a time.
"""

import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

# URL parameters of the HTTP layer, not settings.
HTTP_ONLY = {
    "query",
    "database",
    "wait_end_of_query",
    "default_format",
    "user",
    "password",
    "query_id",
    "session_id",
    "session_timeout",
    "buffer_size",
    "compress",
    "decompress",
}
# `INSERT INTO t (cols) FORMAT F` whose rows follow in the body.
INSERT_FORMAT = re.compile(r"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.I | re.S)
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CODE = re.compile(r"Code: (\d+)\.")


class Engine:
    def __init__(self, data_dir):
        self.lock = threading.Lock()
        self.session = chdb_session.Session(data_dir)
        # Insert bodies go to a file under the data directory, so they go with it.
        self.tmp = os.path.join(data_dir, "http_inserts")
        os.makedirs(self.tmp, exist_ok=True)

    def _run(self, sql):
        return self.session.query(sql, "TabSeparated").bytes()

    def run(self, params, body):
        """Runs one request; returns the answer's bytes or raises with ClickHouse's text."""
        query = params.get("query")
        with self.lock:
            applied = []
            try:
                db = params.get("database")
                if db:
                    if not SETTING_NAME.match(db):
                        raise ValueError(
                            f"Code: 81. DB::Exception: Database {db} does not exist. (UNKNOWN_DATABASE)"
                        )
                    self._run(f"USE {db}")
                for k, v in params.items():
                    if k in HTTP_ONLY:
                        continue
                    if not SETTING_NAME.match(k):
                        raise ValueError(
                            f"Code: 115. DB::Exception: Unknown setting '{k}'. (UNKNOWN_SETTING)"
                        )
                    self._run(f"SET {k} = {quote(v)}")
                    applied.append(k)
                m = INSERT_FORMAT.match(query) if query is not None and body else None
                if m:
                    path = os.path.join(self.tmp, "rows.bin")
                    with open(path, "wb") as f:
                        f.write(body)
                    return self._run(f"{m.group(1)} FROM INFILE {quote(path)} FORMAT {m.group(2)}")
                if query is None:
                    sql = body.decode("utf-8", "replace")
                elif body:
                    sql = query + "\n" + body.decode("utf-8", "replace")
                else:
                    sql = query
                if not sql.strip():
                    raise ValueError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
                return self._run(sql)
            finally:
                for k in applied:
                    try:
                        self._run(f"SET {k} = DEFAULT")
                    except Exception:  # the next request's SET overrides it anyway
                        pass
                if params.get("database"):
                    try:
                        self._run("USE default")
                    except Exception:
                        pass


def quote(v):
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None

    def log_message(self, fmt, *args):  # quiet: tests read failures from answers
        pass

    def _answer(self, status, body, code=None):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if url.path == "/ping":
            return self._answer(200, b"Ok.\n")
        if url.path != "/":
            return self._answer(404, b"There is no handle " + url.path.encode() + b"\n")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            out = self.engine.run(params, body)
        except Exception as e:  # ChdbError carries ClickHouse's own text
            text = str(e)
            m = CODE.search(text)
            if m is None:
                text = f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)"
                code = 1001
            else:
                code = int(m.group(1))
            return self._answer(500, (text + "\n").encode(), code)
        self._answer(200, out)

    do_GET = _handle
    do_POST = _handle


def main():
    if len(sys.argv) != 2:
        print("usage: chdb_http_server.py DATA_DIR", file=sys.stderr)
        sys.exit(2)
    Handler.engine = Engine(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The test process holds our stdin: when it goes (even killed), so do we.
    sys.stdin.read()


if __name__ == "__main__":
    main()
