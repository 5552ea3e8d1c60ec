"""A small OpenAI-compatible server on loopback (openai >= 3 talks httpx2: respx sees nothing).

It serves /v1/chat/completions (structured outputs: `chat` builds the parsed content from the
request) and /v1/embeddings (base64 float32 when asked, as the client does), records every
request, and can answer the next ones with errors such as 429 + Retry-After.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

EMBEDDING_DIMENSIONS = 8
ChatHandler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class FakeOpenAI:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    chat: ChatHandler | None = None
    completion_tokens: int = 50
    embedding_delay: float = 0.0  # seconds each embeddings request takes (kill-mid-stage tests)

    def fail_next(self, status: int, headers: dict[str, str] | None = None, times: int = 1) -> None:
        self.failures.extend([(status, headers or {})] * times)

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


def embedding_for(text: str) -> list[float]:
    """What the fake returns for one input: easy to check from the test."""
    return [float(len(text)), float(text.count(" ")), *([0.5] * (EMBEDDING_DIMENSIONS - 2))]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body["input"]
    data = []
    for index, text in enumerate(inputs):
        vector: Any = embedding_for(text)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(text.split()) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _chat(server: FakeOpenAI, body: dict[str, Any]) -> dict[str, Any]:
    assert server.chat is not None, "set FakeOpenAI.chat for chat tests"
    content = json.dumps(server.chat(body))
    prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": server.completion_tokens,
            "total_tokens": prompt_tokens + server.completion_tokens,
        },
    }


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    routes = {
        "/v1/embeddings": _embeddings,
        "/v1/chat/completions": lambda body: _chat(server, body),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append(Recorded(self.path, body, time.monotonic()))
            if self.path == "/v1/embeddings":
                time.sleep(server.embedding_delay)
            if server.failures:
                status, headers = server.failures.pop(0)
                self._send(status, {"error": {"message": "fake failure", "type": "x"}}, headers)
            elif self.path in routes:
                self._send(200, routes[self.path](body))
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
