#!/usr/bin/env python3
"""A streaming bot backend, standing in for an LLM: it answers in OpenAI's
chat-completions stream form (Server-Sent Events), one word every
WORD_SECONDS (default 0.2), exactly as it would to a browser. It knows
nothing of DingTalk: the gateway in front of it turns the stream into an AI
card that fills in as the words arrive."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORD_SECONDS = float(os.environ.get("WORD_SECONDS", "0.2"))
ADDR = os.environ.get("BACKEND_ADDR", "127.0.0.1:9000")


class Bot(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked responses

    def do_POST(self):
        message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = message.get("text", {}).get("content", "").strip()
        answer = f"{message.get('senderNick', 'friend')}, you asked \"{question}\": here is the answer, one word at a time."
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = answer.split(" ")
        for i, word in enumerate(words):
            delta = word if i == len(words) - 1 else word + " "
            self.event(json.dumps({"choices": [{"index": 0, "delta": {"content": delta}}]}, ensure_ascii=False))
            time.sleep(WORD_SECONDS)  # the model thinking of the next word
        self.event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def event(self, data):
        chunk = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    host, port = ADDR.rsplit(":", 1)
    print(f"streaming backend on http://{ADDR}, a word every {WORD_SECONDS:g} s", flush=True)
    ThreadingHTTPServer((host, int(port)), Bot).serve_forever()
