"""100 concurrent requests from a second process (the real openai client, streamed and not)
against the real server: no errors, every request answered and recorded once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from luodi.store.models import UsageRow
from tests.serve.conftest import fake_route, gateway

LOAD = r"""
import asyncio, json, sys
import openai

async def main(url, key):
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
    async def one(i):
        msgs = [{"role": "user", "content": "slow:3" if i % 2 else f"question {i}"}]
        if i % 3 == 0:
            text, rid = "", None
            async for c in await client.chat.completions.create(
                    model="bot", messages=msgs, stream=True):
                rid = c.id
                if c.choices:
                    text += c.choices[0].delta.content or ""
            return rid, text
        r = await client.chat.completions.create(model="bot", messages=msgs)
        return r.id, r.choices[0].message.content
    results = await asyncio.gather(*(one(i) for i in range(100)), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    print(json.dumps({"errors": errors, "ids": [r[0] for r in ok], "texts": [r[1] for r in ok]}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_hundred_concurrent_requests_from_another_process(tmp_path: Path) -> None:
    with gateway(tmp_path, [{"name": "bot", "routes": [fake_route("w")]}]) as g:
        proc = subprocess.run(
            [sys.executable, "-c", LOAD, g.url, g.admin_key],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["errors"] == []
        assert len(set(out["ids"])) == 100
        assert all(t for t in out["texts"])
        g.recorder.flush()
        with g.store.engine.connect() as c:
            n = c.execute(select(func.count()).select_from(UsageRow)).scalar()
            statuses = set(c.execute(select(UsageRow.status)).scalars())
        assert n == 100 and statuses == {200}
