"""A small OpenAI-compatible chat-completions server for the tests: real HTTP on
127.0.0.1, the OpenAI request and response schema, and answers from a real (tiny) Qwen-VL
checkpoint through the same runner ``vlm:`` uses. It is a test double for vLLM, not a
serving engine.

It can be told to misbehave (``faults``: statuses to answer with before answering for
real; ``delay``: seconds to wait first) and records what it was sent, so the tests can
check the client's schema, retries, timeouts and concurrency bound.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from spatialreward.backends.vlm import VLMBackend
from spatialreward.vlm.inputs import render_prompt
from spatialreward.vlm.runner import Request


def decode_data_url(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        raise ValueError(f"not a base64 image data URL: {head[:40]!r}")
    return Image.open(io.BytesIO(base64.b64decode(data, validate=True))).convert("RGB")


def to_transformers(messages: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[Image.Image], str]:
    """OpenAI chat messages -> transformers chat messages, the images in order, and the
    text of a final assistant turn to continue (``continue_final_message``)."""
    out, images, prefix = [], [], ""
    for k, message in enumerate(messages):
        content = message["content"]
        if message["role"] == "assistant" and k == len(messages) - 1:
            prefix = content
            continue
        if isinstance(content, list):
            parts = []
            for part in content:
                if part["type"] == "image_url":
                    images.append(decode_data_url(part["image_url"]["url"]))
                    parts.append({"type": "image"})
                elif part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    raise ValueError(f"unknown content part {part['type']!r}")
            content = parts
        out.append({"role": message["role"], "content": content})
    return out, images, prefix


class ChatServer:
    """Serves ``backend``'s checkpoint as ``model`` on 127.0.0.1 (a free port)."""

    def __init__(self, backend: VLMBackend, model: str = "tiny-judge",
                 api_key: str | None = None) -> None:
        self.backend, self.model, self.api_key = backend, model, api_key
        self.faults: list[int] = []
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._model = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- answering ---------------------------------------------------------------------
    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        messages, images, prefix = to_transformers(body["messages"])
        runner = self.backend.runner
        prompt = render_prompt(runner.tokenizer, runner.chat_template, messages, prefix)
        # which protocol call this is only matters to the tests' forced answers
        call = "sc" if len(images) > 1 else "pq"
        n = int(body.get("n", 1))
        base = runner.config
        temperature = float(body.get("temperature") or 0.0)
        with self._model:  # the runner's settings are per server: one request at a time
            runner.config = dataclasses.replace(
                base, max_new_tokens=int(body.get("max_tokens", base.max_new_tokens)),
                temperature=temperature, top_p=body.get("top_p"), top_k=body.get("top_k"),
                seed=int(body.get("seed", 0)), samples=n)
            try:
                outputs = runner.generate([Request(call, prompt, tuple(images))] * n)
            finally:
                runner.config = base
        choices = [{"index": i, "message": {"role": "assistant", "content": o.text},
                    "finish_reason": "length" if o.truncated else "stop"}
                   for i, o in enumerate(outputs)]
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model, "choices": choices,
                "usage": {"completion_tokens": sum(o.new_tokens for o in outputs)}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._send(401, {"error": {"message": "invalid API key"}})
                return False

            def do_GET(self) -> None:
                if self.path == "/v1/models" and self._authorised():
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model"}]})
                elif self.path != "/v1/models":
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else None
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    if self.path != "/v1/chat/completions":
                        self._send(404, {"error": {"message": "not found"}})
                    elif fault is not None:
                        self._send(fault, {"error": {"message": f"injected {fault}"}})
                    elif self._authorised():
                        try:
                            answer = server.complete(body)
                        except (KeyError, ValueError) as err:
                            self._send(400, {"error": {"message": str(err)}})
                        else:
                            self._send(200, answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler
