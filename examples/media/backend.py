#!/usr/bin/env python3
"""A backend that answers the pictures sent to a DingTalk robot, without
any DingTalk credential: the gateway passes the picture's download code in
the X-Download-Code header, and its internal /media/ route turns the code
into the picture's bytes.

    BACKEND_ADDR=127.0.0.1:9000 MEDIA_ADDR=127.0.0.1:8082 python3 examples/media/backend.py
"""

import json
import os
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDR = os.environ.get("BACKEND_ADDR", "127.0.0.1:9000")
MEDIA = os.environ.get("MEDIA_ADDR", "127.0.0.1:8082")


def fetch(code):
    """The bytes and content type of the file with download code code."""
    url = f"http://{MEDIA}/media/" + urllib.parse.quote(code, safe="")
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read(), resp.headers.get("Content-Type", "")


class Bot(BaseHTTPRequestHandler):
    def do_POST(self):
        message = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        code = self.headers.get("X-Download-Code", "")
        nick = message.get("senderNick", "")
        if code:
            data, kind = fetch(code)
            content = f"Got your picture, {nick}: {len(data)} bytes of {kind}."
        else:
            content = f"Send me a picture, {nick}."
        body = json.dumps({"msgtype": "text", "text": {"content": content}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # the gateway logs the callbacks


if __name__ == "__main__":
    host, port = ADDR.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Bot).serve_forever()
