#!/usr/bin/env python3
"""A tiny bearer-token server for the registry tests (127.0.0.1 only).

  token_server.py --port P --key key.pem --cert cert.pem --user U --password PW
                  --service S --issuer I [--log FILE] [--lifetime SECONDS]

GET /token?service=S&scope=repository:NAME:ACTIONS (Basic auth U:PW) answers
{"token": JWT, "expires_in": 60, "issued_at": ...}; the JWT is RS256-signed
with key.pem (signing done by the openssl CLI) and carries cert.pem in x5c,
the form docker-registry's `auth: token: rootcertbundle:` verifies. Requests
without valid credentials get 401. Each request is logged as one JSON line
(scopes, whether credentials were valid; never the password).
"""
import argparse
import base64
import http.server
import json
import socketserver
import subprocess
import threading
import time
import urllib.parse
import uuid


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        cfg = self.server.cfg
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        scopes = q.get("scope", [])
        auth = self.headers.get("Authorization", "")
        ok = False
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                ok = user == cfg.user and pw == cfg.password
            except Exception:
                ok = False
        with open(cfg.log, "a") as f:
            f.write(json.dumps({"path": url.path, "scopes": scopes, "authorized": ok}) + "\n")
        if url.path != "/token" or not ok:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        access = []
        for s in scopes:
            for one in s.split(" "):
                parts = one.split(":")
                if len(parts) >= 3:
                    access.append({"type": parts[0], "name": ":".join(parts[1:-1]),
                                   "actions": parts[-1].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [cfg.cert_der_b64]}
        claims = {"iss": cfg.issuer, "sub": cfg.user, "aud": cfg.service, "exp": now + 60,
                  "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()), "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", cfg.key],
                             input=signing_input, capture_output=True, check=True).stdout
        token = signing_input.decode() + "." + b64url(sig)
        body = json.dumps({"token": token, "expires_in": 60,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    for a in ("--key", "--cert", "--user", "--password", "--service", "--issuer"):
        ap.add_argument(a, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", default="/dev/null")
    ap.add_argument("--lifetime", type=float, default=300)
    cfg = ap.parse_args()
    der = subprocess.run(["openssl", "x509", "-in", cfg.cert, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    cfg.cert_der_b64 = base64.b64encode(der).decode()
    srv = Server(("127.0.0.1", cfg.port), Handler)
    srv.cfg = cfg
    threading.Timer(cfg.lifetime, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
