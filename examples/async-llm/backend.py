#!/usr/bin/env python3
"""A slow bot backend, standing in for an LLM: it takes DELAY_SECONDS (default 20)
to think, then answers in plain text. It trusts the gateway in front of it, which
verified the callback; it never talks to DingTalk itself."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = float(os.environ.get("DELAY_SECONDS", "20"))
ADDR = os.environ.get("BACKEND_ADDR", "127.0.0.1:9000")


class Bot(BaseHTTPRequestHandler):
    def do_POST(self):
        message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = message.get("text", {}).get("content", "").strip()
        time.sleep(DELAY)  # the slow part: DingTalk would have redelivered by now
        answer = f"After {DELAY:g} s of thought, {message.get('senderNick', 'friend')}: \"{question}\" is a fine question."
        body = answer.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    host, port = ADDR.rsplit(":", 1)
    print(f"slow backend on http://{ADDR}, answering after {DELAY:g} s", flush=True)
    ThreadingHTTPServer((host, int(port)), Bot).serve_forever()
