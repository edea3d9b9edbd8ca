#!/usr/bin/env python3
"""A DingTalk event backend behind caddy-dingtalk's dingtalk_event handler.

Caddy verified each push's signature, decrypted it and checked its owner key
before passing it on, and answers DingTalk's URL checks itself: this server
gets each event once, as plain JSON, with its type in X-Dingtalk-Event-Type.
It logs every event as one line of JSON (to EVENTS_LOG, a file, when set;
otherwise to standard output) and answers 200, which Caddy turns into the
encrypted "success" DingTalk wants. Any other answer makes DingTalk deliver
the event again.

    BACKEND_ADDR=127.0.0.1:9000 python3 examples/events/backend.py
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

# Keep it on loopback: whatever reaches this server is trusted.
HOST, _, PORT = os.environ.get("BACKEND_ADDR", "127.0.0.1:9000").rpartition(":")
LOG_PATH = os.environ.get("EVENTS_LOG")
log_lock = Lock()


def log_event(event_type, event):
    line = json.dumps({"type": event_type, "event": event}, ensure_ascii=False, sort_keys=True)
    with log_lock:
        if LOG_PATH:
            with open(LOG_PATH, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        else:
            print(line, flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        try:
            event = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_error(400, "not JSON")  # Caddy never sends this; DingTalk would retry
            return
        log_event(self.headers.get("X-Dingtalk-Event-Type", ""), event)
        # Whatever is written here stays between Caddy and this server:
        # DingTalk gets Caddy's encrypted "success" for any 2xx.
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):  # one line per event is enough
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer((HOST, int(PORT)), Handler)
    print(f"event backend listening on {HOST}:{PORT}", file=sys.stderr, flush=True)
    server.serve_forever()
