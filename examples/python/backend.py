#!/usr/bin/env python3
"""A DingTalk bot backend behind caddy-dingtalk: Python's standard library only.

Caddy's dingtalk handler verified each callback's timestamp and sign before
passing it on, and this server listens on loopback only, so it trusts what
arrives: it reads the callback's JSON body and answers with a DingTalk text
message that @s the sender. X-Dingtalk-Bot names the robot the callback is
for; Caddy sets it and no client can forge it.

    BACKEND_ADDR=127.0.0.1:9000 python3 examples/python/backend.py
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Keep it on loopback: whatever reaches this server is trusted.
ADDR = os.environ.get("BACKEND_ADDR", "127.0.0.1:9000")


def answer(message, bot):
    """The DingTalk text message answering message, @-mentioning its sender."""
    if message.get("msgtype") == "text":
        # In a group, DingTalk leaves a space where it removed "@robot".
        got = (message.get("text") or {}).get("content", "").strip()
    else:
        got = f'[{message.get("msgtype")}]'
    content = f'Hi {message.get("senderNick", "")}, bot {bot} (Python) got: {got}'
    reply = {"msgtype": "text", "text": {"content": content}}
    # An @ renders only when the text names the id too. External users, and
    # everyone while the robot is not published, have no staff id: then
    # DingTalk's own user id is the one to @.
    if message.get("senderStaffId"):
        reply["at"] = {"atUserIds": [message["senderStaffId"]]}
        reply["text"]["content"] += " @" + message["senderStaffId"]
    elif message.get("senderId"):
        reply["at"] = {"atDingtalkIds": [message["senderId"]]}
        reply["text"]["content"] += " @" + message["senderId"]
    return reply


class Bot(BaseHTTPRequestHandler):
    def do_POST(self):
        # Caddy sends the body with its length, bounded by max_body (1MiB by default).
        length = int(self.headers.get("Content-Length") or 0)
        try:
            message = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_error(400, "not a DingTalk callback")
            return
        bot = self.headers.get("X-Dingtalk-Bot", "")
        body = json.dumps(answer(message, bot), ensure_ascii=False).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    host, port = ADDR.rsplit(":", 1)
    print(f"Python bot backend on http://{ADDR}", flush=True)
    ThreadingHTTPServer((host, int(port)), Bot).serve_forever()
