"""Helpers for tests that run the real `luodi` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def luodi_bin() -> str:
    """The installed `luodi` console script of this environment."""
    exe = Path(sys.executable).parent / "luodi"
    return str(exe) if exe.exists() else shutil.which("luodi") or "luodi"


def run_cli(
    *args: str,
    home: Path,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the real `luodi` command with LUODI_HOME=home; returns the completed process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LUODI_")}
    full_env.update({"LUODI_HOME": str(home), **(env or {})})
    proc = subprocess.run(
        [luodi_bin(), *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"luodi {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def save_qa(store: Any, pairs: Sequence[tuple[str, str]], name: str = "faq") -> str:
    """Register single-turn question/answer `pairs` as version 1 of qa dataset `name`."""
    from luodi.data.datasets import save_dataset
    from luodi.data.records import get_kind, make_record
    from luodi.data.report import DatasetReport

    kind = get_kind("qa")
    recs = [
        make_record(
            kind,
            source="/faq.csv",
            source_sha256="0" * 64,
            location=f"row {i}",
            ordinal=0,
            messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        )
        for i, (q, a) in enumerate(pairs)
    ]
    report = DatasetReport(name=name, stage="ingest", record_kind="qa")
    return save_dataset(store, report, [recs]).dataset


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve ASGI `app` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL
    (http://127.0.0.1:PORT) once it accepts requests, and stops it (lifespan shutdown) after."""
    import threading
    import time

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
