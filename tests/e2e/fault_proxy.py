#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the registry tests (127.0.0.1 only).

  fault_proxy.py --port P --upstream 127.0.0.1:U --plan FAULTS [--log FILE]
                 [--lifetime SECONDS]

Forwards every request to the upstream registry. FAULTS is a comma-separated
list consumed in order by the requests whose path matches the fault's kind:

  drop:N        blob GET: send the headers and N body bytes, then cut the connection
  stall:N:S     blob GET: send N body bytes, then go silent for S seconds, then cut
  503           manifest or blob GET: answer 503 (no Retry-After)
  429:S         manifest or blob GET: answer 429 with Retry-After: S

Each request is logged as one JSON line (method, path, range, fault) so a test
can check that a resumed download asked for the right Range. The proxy exits
by itself after --lifetime seconds (default 300).
"""
import argparse
import http.client
import http.server
import json
import socketserver
import sys
import threading
import time

LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, fault):
        entry = {"method": self.command, "path": self.path,
                 "range": self.headers.get("Range"), "fault": fault}
        with LOCK:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def take_fault(self, body_size=None):
        """Pops the next fault if it applies to this request.

        Status faults apply to manifest and blob GETs before forwarding;
        drop/stall faults to blob GETs whose body is longer than the byte
        count (so a small config blob does not use them up)."""
        is_blob = "/blobs/sha256:" in self.path and self.command == "GET"
        is_manifest = "/manifests/" in self.path and self.command == "GET"
        with LOCK:
            plan = self.server.plan
            if not plan:
                return None
            parts = plan[0].split(":")
            if body_size is None:
                if parts[0] in ("503", "429") and (is_blob or is_manifest):
                    return plan.pop(0)
                return None
            if parts[0] in ("drop", "stall") and is_blob and body_size > int(parts[1]):
                return plan.pop(0)
        return None

    def forward(self):
        fault = self.take_fault()
        if fault:
            self.record(fault)
            parts = fault.split(":")
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'
            self.send_response(int(parts[0]))
            if parts[0] == "429":
                self.send_header("Retry-After", parts[1])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "transfer-encoding"):
                continue
            self.send_header(k, v)
        data = resp.read()
        if self.command == "GET" and resp.status in (200, 206):
            fault = self.take_fault(len(data))
        self.record(fault)
        if resp.getheader("Content-Length") is None and self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        conn.close()
        if self.command == "HEAD":
            return
        if fault:
            parts = fault.split(":")
            n = min(int(parts[1]), len(data))
            self.wfile.write(data[:n])
            self.wfile.flush()
            if parts[0] == "stall":
                time.sleep(float(parts[2]))
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--plan", default="")
    ap.add_argument("--log", default="/dev/null")
    ap.add_argument("--lifetime", type=float, default=300)
    a = ap.parse_args()
    if not a.upstream.startswith("127.0.0.1:"):
        sys.exit("fault_proxy: upstream must be on 127.0.0.1")
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.upstream = a.upstream
    srv.plan = [p for p in a.plan.split(",") if p]
    srv.log_path = a.log
    threading.Timer(a.lifetime, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
