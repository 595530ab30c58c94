"""A stand-in for a paid chat API (OpenAI, OpenRouter), shared by the mutator and evolution tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = tuple[int, dict, dict]  # (HTTP status, JSON body, extra headers)


class FakeChatApi:
    """Stands in for the paid API (OpenAI, OpenRouter): an OpenAI-compatible
    ``POST /v1/chat/completions`` on 127.0.0.1 that plays scripted replies in order (the last one
    repeats), or asks ``replies(body)`` for each one, and records every request, so the tests
    spend nothing and need no network."""

    def __init__(self, replies: list[Reply] | Callable[[dict], Reply]):
        self.replies = replies
        self.requests: list[tuple[str, dict, dict]] = []  # (path, lowercase headers, JSON body)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with api._lock:  # requests may come in at once
                    api.requests.append((self.path, headers, body))
                    n = len(api.requests)
                if callable(api.replies):
                    status, payload, headers = api.replies(body)
                else:
                    status, payload, headers = api.replies[min(n, len(api.replies)) - 1]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def completion(answer: str | list[str], tokens_in: int = 1200, tokens_out: int = 300,
               finish: str = "stop") -> Reply:
    """One answer, or several choices (a request's ``n``) in the order given."""
    answers = [answer] if isinstance(answer, str) else answer
    return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
                 "choices": [{"index": i, "finish_reason": finish,
                              "message": {"role": "assistant", "content": a}} for i, a in enumerate(answers)],
                 "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                           "total_tokens": tokens_in + tokens_out}}, {}


def refusal(status: int, message: str, headers: dict | None = None) -> Reply:
    return status, {"error": {"message": message, "type": "error", "code": None}}, headers or {}
