"""`kind: http` tools: one function served by an HTTP endpoint.

POST sends the arguments as a JSON object body; GET sends them as query parameters (strings
as they are, anything else as JSON text). A 2xx reply is the result: JSON is passed on as
compact JSON text, anything else as its text. Any other status is a ToolFailure carrying the
status and the start of the body, so the model can tell the user what went wrong.
"""

from __future__ import annotations

import json
import os
from typing import Any

from luodi.errors import BadInputError
from luodi.serve.tools.box import TOOL_KINDS, ToolDef, ToolFailure
from luodi.serve.tools.spec import HttpTool

ERROR_BODY_CHARS = 300


@TOOL_KINDS.register("http")
class HttpSource:
    """One HTTP tool, with a connection pool kept for the deployment version's life."""

    def __init__(self, spec: HttpTool) -> None:
        self.spec = spec
        self.timeout_s = spec.timeout_s
        self.tools = [
            ToolDef(
                name=spec.name,
                description=spec.description,
                parameters=spec.parameters,
                kind="http",
                source=spec.name,
                remote=spec.name,
            )
        ]
        self._session: Any = None
        self._headers: dict[str, str] = {}

    async def start(self) -> None:
        import aiohttp

        headers = dict(self.spec.headers)
        for header, var in self.spec.headers_env.items():
            value = os.environ.get(var)
            if value is None:
                raise BadInputError(
                    f"http tool {self.spec.name!r}: header {header} needs environment variable "
                    f"{var}, which is not set"
                )
            headers[header] = value
        self._headers = headers
        # The timeout is the gateway's (asyncio.timeout around the call); none here.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def call(self, tool: ToolDef, arguments: dict[str, Any]) -> str:
        spec = self.spec
        if spec.method == "GET":
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
            ctx = self._session.get(spec.url, params=params, headers=self._headers)
        else:
            ctx = self._session.post(spec.url, json=arguments, headers=self._headers)
        async with ctx as resp:
            body = await resp.text(errors="replace")
            if resp.status >= 400:
                snippet = body[:ERROR_BODY_CHARS].strip()
                raise ToolFailure(
                    f"HTTP {resp.status} {resp.reason or ''}".rstrip()
                    + (f": {snippet}" if snippet else "")
                )
            if "json" in (resp.content_type or ""):
                try:
                    return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
                except json.JSONDecodeError:
                    pass
            return body

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
