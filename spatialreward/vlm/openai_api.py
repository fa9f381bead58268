"""Talking to an OpenAI-compatible chat-completions server (vLLM, SGLang, ``transformers
serve``, a hosted API): the ``openai:`` backend's settings, its request bodies and one
HTTP call with timeouts and retries.

A request carries one protocol call: the system text, then the user turn with each image
as a ``data:image/png;base64,...`` URL in the place the template puts it, then (when the
template starts the answer) an assistant turn the server continues (vLLM's
``continue_final_message``). PNG keeps every pixel, so the server decodes the very image
``vlm:`` would have seen.

The API key is read from the environment variable ``key_env`` names when a request is
sent; it is never kept on the config, put in a version, a log line or an error message.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import time
from dataclasses import MISSING, dataclass, field
from typing import Any

from PIL import Image

from ..errors import ConfigError
from .config import spec_settings
from .prompts import Call
from .resize import official_resize

RETRY_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)
"""Answers worth asking again (busy, rate-limited, restarting); others are final."""


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class OpenAIConfig:
    """Settings of ``openai:BASE_URL[,key=value...]``."""

    base_url: str = _help(MISSING, "the server's API root, e.g. http://127.0.0.1:8000/v1; "
                                   "several joined by | (one server per GPU): each source "
                                   "image's calls go to one of them, so its prefix is cached "
                                   "there")
    model: str = _help("", "model name the server knows (default: the server's only model, "
                           "asked from GET /models)")
    protocol: str = _help("spatialreward", "judging protocol: 'spatialreward', 'editscore' "
                                           "or the path of your own .toml template file")
    key_env: str = _help("", "name of the environment variable holding the API key (the "
                             "key itself is never written in a spec)")
    concurrency: int = _help(8, "requests in flight at once, across all callers")
    timeout: float = _help(300.0, "seconds to wait for one answer")
    retries: int = _help(3, "further tries after a network error, a timeout or a busy "
                            "answer (429, 5xx), with exponential backoff")
    backoff: float = _help(1.0, "seconds before the first retry (doubling each time; a "
                                "server's Retry-After is honoured up to 60 s)")
    max_new_tokens: int = _help(4096, "longest answer per call (sent as max_tokens; an answer "
                                      "cut off is a failed judgment counted as truncated)")
    samples: int = _help(1, "answers per call (sent as n); above 1 their scores are "
                            "averaged (EditScore's self-ensemble)")
    temperature: float | None = _help(None, "sampling temperature (default: the protocol's; "
                                            "0.7 with samples > 1 on a greedy protocol)")
    top_p: float | None = _help(None, "nucleus threshold (default: the protocol's)")
    top_k: int | None = _help(None, "top-k cut, 0 = none (default: the protocol's; sent only "
                                    "when set, as vLLM's top_k)")
    seed: int | None = _help(None, "sampling seed sent to the server (None: not sent)")
    parse: str = _help("ours", "reading scores: 'ours' or 'official' (as for vlm:)")
    resize: str = _help("none", "'none' (the server's processor sizes the images) or "
                                "'official' (qwen-vl-utils' rules here, before sending)")
    factor: int = _help(32, "resize=official: the patch x merge size of the model (32 for "
                            "Qwen3-VL, 28 for Qwen2.5-VL)")
    min_pixels: int | None = _help(None, "resize=official: smallest image in pixels")
    max_pixels: int | None = _help(None, "resize=official: largest image in pixels")
    cache: int = _help(256, "judgments kept in memory, by images, instruction and settings")

    def __post_init__(self) -> None:
        urls = [u.strip().rstrip("/") for u in self.base_url.split("|")]
        for url in urls:
            if not re.match(r"^https?://[^/\s|]+", url):
                raise ConfigError(f"the openai backend needs an http(s) base URL such as "
                                  f"openai:http://127.0.0.1:8000/v1, got {url!r}")
        object.__setattr__(self, "base_url", "|".join(urls))
        if self.key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.key_env):
            raise ConfigError(f"key_env must be the NAME of an environment variable (the key "
                              f"stays in the environment), got {self.key_env!r}")
        for name in ("concurrency", "max_new_tokens", "samples", "factor"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("retries", "cache"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not self.timeout > 0 or self.backoff < 0:
            raise ConfigError("timeout must be positive and backoff not negative")
        if self.parse not in ("ours", "official"):
            raise ConfigError(f"parse must be 'ours' or 'official', got {self.parse!r}")
        if self.resize not in ("none", "official"):
            raise ConfigError(f"resize must be 'none' or 'official', got {self.resize!r}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def from_argument(cls, argument: str | None) -> OpenAIConfig:
        """Parse ``BASE_URL[,key=value...]`` (the part of the spec after ``openai:``).

        >>> c = OpenAIConfig.from_argument("http://127.0.0.1:8000/v1/,model=sr8b,concurrency=4")
        >>> c.base_url, c.model, c.concurrency
        ('http://127.0.0.1:8000/v1', 'sr8b', 4)
        """
        if not argument or not argument.strip():
            raise ConfigError("the openai backend needs the server's URL: --backend "
                              "openai:http://127.0.0.1:8000/v1[,model=NAME] (docs/serving.md)")
        return cls(**spec_settings(argument, cls, "base_url", "openai"))

    @property
    def urls(self) -> list[str]:
        """The servers' API roots (one, or several joined by ``|`` in the spec)."""
        return self.base_url.split("|")

    def api_key(self) -> str | None:
        """The key, read now from the environment; a named but unset variable is an error."""
        if not self.key_env:
            return None
        key = os.environ.get(self.key_env)
        if not key:
            raise ConfigError(f"key_env={self.key_env} names an environment variable that is "
                              f"not set; export {self.key_env}=... before starting")
        return key


def data_url(image: Image.Image) -> str:
    """A lossless PNG data URL of ``image`` (as RGB)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def sized(image: Image.Image, config: OpenAIConfig) -> Image.Image:
    """The image as sent: unchanged, or under ``resize=official`` resized by the
    qwen-vl-utils rules (:func:`.resize.official_resize`)."""
    if config.resize == "official":
        return official_resize(image, factor=config.factor, min_pixels=config.min_pixels,
                               max_pixels=config.max_pixels)
    return image


def chat_messages(call: Call, instruction: str, images: list[Image.Image]
                  ) -> list[dict[str, Any]]:
    """The OpenAI chat messages of one protocol call: the same turns and the same order of
    text and images as the transformers messages ``vlm:`` renders, images as data URLs."""
    shown = len(images) if "sources" in call.images else None
    messages = call.messages(instruction, shown)
    urls = iter(images)
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image_url", "image_url": {"url": data_url(next(urls))}}
                       if part["type"] == "image" else {"type": "text", "text": part["text"]}
                       for part in content]
        out.append({"role": message["role"], "content": content})
    if call.answer_prefix:
        out.append({"role": "assistant", "content": call.answer_prefix})
    return out


def auth_headers(config: OpenAIConfig) -> dict[str, str]:
    """The Authorization header when a key is configured (read from its variable now)."""
    key = config.api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


class ServerError(RuntimeError):
    """A request that failed for good (after its retries); the message says why and
    never contains the API key."""


def post_json(client: Any, url: str, body: dict[str, Any], config: OpenAIConfig,
              sleep: Any = time.sleep) -> dict[str, Any]:
    """POST ``body`` to ``url`` with ``client`` (an ``httpx.Client``), retrying network
    errors, timeouts and busy answers ``config.retries`` times with exponential backoff.
    Returns the decoded JSON answer; raises :class:`ServerError`."""
    import httpx

    headers = {"Content-Type": "application/json", **auth_headers(config)}
    last = ""
    for attempt in range(config.retries + 1):
        if attempt:
            sleep(_delay(config.backoff, attempt, last))
        try:
            response = client.post(url, json=body, headers=headers, timeout=config.timeout)
        except httpx.TimeoutException:
            last = f"no answer within timeout={config.timeout:g} s"
            continue
        except httpx.TransportError as err:  # refused, reset, DNS: the server is not there
            last = f"cannot reach {url}: {type(err).__name__}"
            continue
        if response.status_code in RETRY_STATUS:
            last = f"HTTP {response.status_code} {_detail(response)}"
            retry_after = response.headers.get("retry-after", "")
            last += f" [retry-after {retry_after}]" if retry_after.isdigit() else ""
            continue
        if response.status_code == 401 or response.status_code == 403:
            where = f"the key in ${config.key_env}" if config.key_env else "no API key"
            raise ServerError(f"{url} refused the request (HTTP {response.status_code}): "
                              f"{where}; set key_env=VAR to the variable holding the key")
        if response.status_code >= 400:
            raise ServerError(f"{url} answered HTTP {response.status_code}: "
                              f"{_detail(response)}")
        try:
            answer = response.json()
        except ValueError:
            raise ServerError(f"{url} answered something that is not JSON "
                              f"({response.text[:120]!r})") from None
        if not isinstance(answer, dict):
            raise ServerError(f"{url} answered JSON that is not an object")
        return answer
    tries = config.retries + 1
    raise ServerError(f"{last} (gave up after {tries} {'try' if tries == 1 else 'tries'})")


def _delay(backoff: float, attempt: int, last: str) -> float:
    found = re.search(r"\[retry-after (\d+)\]", last)
    if found:
        return min(60.0, float(found.group(1)))
    return backoff * 2 ** (attempt - 1)


def _detail(response: Any) -> str:
    """The server's own error message, short."""
    try:
        body = response.json()
        message = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(message, dict):
            message = message.get("message", message)
        return str(message)[:300]
    except ValueError:
        return response.text[:300]


def describe(config: OpenAIConfig) -> dict[str, Any]:
    """The settings as plain JSON values (no key: only its variable's name)."""
    return dataclasses.asdict(config)
