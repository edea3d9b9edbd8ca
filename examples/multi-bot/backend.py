#!/usr/bin/env python3
"""One backend for two DingTalk robots behind caddy-dingtalk (standard library only).

Caddy verified each callback with the secret of one of its robots and says
which in the X-Dingtalk-Bot header (a client cannot forge it: Caddy removes
any X-Dingtalk-* header it did not set). This server listens on loopback only
and trusts what arrives; it answers each robot's users in that robot's voice,
with a DingTalk text message that @s the sender.

    BACKEND_ADDR=127.0.0.1:9000 python3 examples/multi-bot/backend.py
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Keep it on loopback: whatever reaches this server is trusted.
ADDR = os.environ.get("BACKEND_ADDR", "127.0.0.1:9000")


def sales(nick, text):
    return f"Thanks {nick}! A sales rep will get back to you about: {text}"


def support(nick, text):
    return f"Support here, {nick}. Ticket opened for: {text}"


# The bot names of the Caddyfile's `bot <name> <secret>` lines.
BOTS = {"sales": sales, "support": support}


def answer(message, bot):
    """The text message bot answers message with, @-mentioning its sender."""
    nick = message.get("senderNick", "")
    # In a group, DingTalk leaves a space where it removed "@robot".
    text = (message.get("text") or {}).get("content", "").strip() or f'[{message.get("msgtype")}]'
    if bot in BOTS:
        content = BOTS[bot](nick, text)
    else:  # a bot added to the Caddyfile but not here yet
        content = f"Sorry {nick}, bot {bot} has no answers yet."
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


class Bots(BaseHTTPRequestHandler):
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
    print(f"multi-bot backend on http://{ADDR}, answering for {', '.join(BOTS)}", flush=True)
    ThreadingHTTPServer((host, int(port)), Bots).serve_forever()
