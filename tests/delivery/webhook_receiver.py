"""A webhook receiver for the delivery tests: it verifies every delivery with the
Standard Webhooks library (not Mapwright's code), and records what it accepted.

    webhook_receiver.py --secret whsec_... --out events.jsonl

It prints `listening on <port>` once ready. Each accepted delivery is one JSON line in the
output file: {"id", "timestamp", "signatures", "body"}. A delivery whose signature does not
verify is answered 401 and recorded in `<out>.rejected`.

Faults on demand, for the fault tests: POST /control with a JSON object
  {"secret": "whsec_..."}          verify with this secret from now on
  {"fail_user": "jdoe", "status": 500}   answer `status` to every event about that userName
  {"busy": n, "retry_after": 1}   answer 429 with Retry-After to the next n deliveries
  {"down": true|false}             answer 503 to every delivery while down
  {"misbehave": "hang"|"huge"|"redirect"|null}   never answer / answer 500 with a 100 MB
                                   body / redirect to itself, to every delivery

It is also an OAuth 2.0 token endpoint (client credentials) for SCIM targets that need one:
POST /token with HTTP Basic `client:secret` (set with {"oauth": {"client": ..., "secret": ...,
"token": ..., "expires_in": n}}) answers that token; each call is a line of `<out>.tokens`.
"""

import argparse
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

state = {"secret": None, "fail_user": None, "status": 500, "busy": 0, "retry_after": 1, "down": False, "misbehave": None, "oauth": None}
lock = threading.Lock()


def user_name(body):
    data = body.get("data", {})
    return (data.get("user") or {}).get("userName")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def token(self, raw):
        oauth = state["oauth"] or {}
        expected = "Basic " + base64.b64encode(f"{oauth.get('client')}:{oauth.get('secret')}".encode()).decode()
        ok = self.headers.get("Authorization") == expected and b"grant_type=client_credentials" in raw
        with open(args.out + ".tokens", "a") as f:
            f.write(json.dumps({"ok": ok}) + "\n")
        if not ok:
            return self.answer(401)
        body = json.dumps({"access_token": oauth["token"], "token_type": "Bearer", "expires_in": oauth.get("expires_in", 3600)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/control":
            with lock:
                state.update(json.loads(raw))
            return self.answer(204)
        if self.path == "/token":
            return self.token(raw)
        with lock:
            secret, down, busy, misbehave = state["secret"], state["down"], state["busy"], state["misbehave"]
            if busy > 0:
                state["busy"] -= 1
        if misbehave == "hang":
            time.sleep(60)
            return self.answer(204)
        if misbehave == "redirect":
            return self.answer(302, {"Location": self.path})
        if misbehave == "huge":
            self.send_response(500)
            self.send_header("Content-Length", str(100 << 20))
            self.end_headers()
            chunk = b"x" * (1 << 20)
            try:
                for _ in range(100):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if down:
            return self.answer(503)
        if busy > 0:
            return self.answer(429, {"Retry-After": str(state["retry_after"])})
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = Webhook(secret).verify(raw, headers)
        except WebhookVerificationError as e:
            with open(args.out + ".rejected", "a") as f:
                f.write(json.dumps({"id": headers.get("webhook-id"), "error": str(e)}) + "\n")
            return self.answer(401)
        if state["fail_user"] is not None and user_name(body) == state["fail_user"]:
            return self.answer(state["status"])
        record = {"id": headers["webhook-id"], "timestamp": headers["webhook-timestamp"], "signatures": headers["webhook-signature"].count("v1,"), "body": body}
        with lock, open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.answer(204)


parser = argparse.ArgumentParser()
parser.add_argument("--secret", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()
state["secret"] = args.secret
server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print(f"listening on {server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
