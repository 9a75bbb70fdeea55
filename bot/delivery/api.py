"""A lean Bot API client for the sender.

python-telegram-bot builds full Message objects from every answer; sending many thousands of
messages only needs "ok, or which error". This client posts JSON (multipart for uploads) over
one keep-alive connection pool and returns just that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ApiResult:
    ok: bool
    result: Any = None
    #: Telegram's error code (403, 429, …); None for network errors and timeouts.
    error_code: int | None = None
    description: str = ""
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        """Worth retrying later: network trouble, timeouts, Telegram's 5xx."""
        return self.error_code is None or self.error_code >= 500

    @property
    def chat_gone(self) -> bool:
        """The resident blocked the bot, deleted their account, or the chat does not exist."""
        if self.error_code == 403:
            return True
        text = self.description.lower()
        return self.error_code == 400 and (
            "chat not found" in text or "user is deactivated" in text or "peer_id_invalid" in text
        )


@dataclass(frozen=True)
class Upload:
    field: str
    filename: str
    data: bytes
    content_type: str = "image/png"


class BotApi:
    def __init__(
        self, api_url: str, token: str, *, connections: int = 32, timeout: float = 15.0
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"{api_url}/bot{token}/",
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    async def call(
        self, method: str, params: dict[str, Any], upload: Upload | None = None
    ) -> ApiResult:
        try:
            if upload is None:
                response = await self._client.post(method, json=params)
            else:
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
                files = {upload.field: (upload.filename, upload.data, upload.content_type)}
                response = await self._client.post(method, data=form, files=files)
        except httpx.HTTPError as exc:
            return ApiResult(False, description=f"{type(exc).__name__}: {exc}"[:200])
        try:
            body = response.json()
        except ValueError:
            return ApiResult(
                False, error_code=response.status_code, description=f"HTTP {response.status_code}"
            )
        if body.get("ok"):
            return ApiResult(True, result=body.get("result"))
        parameters = body.get("parameters") or {}
        return ApiResult(
            False,
            error_code=int(body.get("error_code") or response.status_code),
            description=str(body.get("description") or ""),
            retry_after=parameters.get("retry_after"),
        )

    async def close(self) -> None:
        await self._client.aclose()
