"""Gateway overhead: latency and throughput through `luodi serve` vs the upstream called directly.

Run (from the repository root):

    .venv/bin/python bench/bench_gateway.py                 # 1000 sequential, 5 s at 16 in flight
    .venv/bin/python bench/bench_gateway.py --requests 3000 --seconds 10 --concurrency 32

Three processes on this machine: a stub OpenAI-compatible upstream (a bare ASGI app under
uvicorn answering every chat completion with the same small JSON at once), the gateway (`luodi
serve` with a deployment routing to the stub, API keys, a rate limit, token quotas, usage
records, the PII-masked request log and metrics all on), and this client (httpx, keep-alive).

Figures, each measured on the same stub in the same run:
- sequential latency p50 / p99 (ms) of POST /v1/chat/completions, direct vs through the gateway,
  and the added p50 (target ≤ 1 ms);
- throughput (requests/s) with `--concurrency` requests in flight, and the ratio gateway/direct
  (target ≥ 0.5).
On 2 cores the three processes compete for CPU, which counts against the gateway (its own
work and the client's share the cores); nothing here asserts a time.

With `--decode`: decode tokens/s of the default SmolLM2 GGUF streamed through the gateway
(llama.cpp backend, /v1/completions, greedy, a counting prompt that does not stop early)
against `llama_cpp.Llama.create_completion` called in this process on the same file with the
same settings, interleaved, best of `--repeats` (target ≥ 0.9×).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPLY = json.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "stub reply"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
).encode()


async def stub_app(scope, receive, send) -> None:  # noqa: ANN001 - a bare ASGI app
    """The stub upstream: drains the body and answers every request with REPLY."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": REPLY})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


BODY = {"model": "m", "messages": [{"role": "user", "content": "你好，请问保修期多久？"}]}


def sequential(url: str, key: str | None, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    out = []
    with httpx.Client(headers=headers, timeout=30) as c:
        for _ in range(20):  # warm the connection and caches
            c.post(url, json=BODY).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            c.post(url, json=BODY).raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
    return out


async def _throughput(url: str, key: str | None, seconds: float, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = 0
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as c:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                r = await c.post(url, json=BODY)
                r.raise_for_status()
                done += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


def _stream_tokens(url: str, key: str, tokens: int) -> float:
    """Seconds to stream `tokens` completion tokens through the gateway."""
    body = {"model": "smol", "prompt": COUNTING, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    start = time.perf_counter()
    usage = None
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {key}"}) as r:  # fmt: skip
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    elapsed = time.perf_counter() - start
    assert usage and usage["completion_tokens"] == tokens, f"stopped early: {usage}"
    return elapsed


def decode(tokens: int, repeats: int) -> None:
    import llama_cpp

    from luodi.config import Settings
    from luodi.models.base import default_base
    from luodi.store import Store

    luodi = str(Path(sys.executable).parent / "luodi")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUODI_")}
        env["LUODI_HOME"] = tmp
        store = Store(Settings(home=Path(tmp)))
        info = default_base(store)
        store.close()
        gguf = Path(info.meta["path"]) / info.meta["gguf_file"]
        port = _port()
        cfg = Path(tmp) / "deploy.yaml"
        cfg.write_text(
            f"serve: {{port: {port}, limits: {{max_tokens_cap: 4096}}}}\ndeployments:\n"
            "  - name: smol\n    routes: [{model: default}]\n",
            encoding="utf-8",
        )
        subprocess.run([luodi, "teams", "create", "default"], env=env, capture_output=True)
        key = subprocess.run(
            [luodi, "keys", "create", "--team", "default", "--name", "bench"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        gateway = subprocess.Popen([luodi, "serve", "--config", str(cfg)], env=env,
                                   stdout=subprocess.DEVNULL)  # fmt: skip
        direct = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count(),
                                 verbose=False, seed=0)  # fmt: skip
        same = {"temperature": 0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}

        def lib() -> float:
            start = time.perf_counter()
            out = direct.create_completion(COUNTING, max_tokens=tokens, stream=False, **same)
            assert out["usage"]["completion_tokens"] == tokens, "the prompt stopped early"
            return time.perf_counter() - start

        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or gateway.poll() is not None:
                    raise SystemExit("gateway did not become ready")
                time.sleep(0.3)
            lib(), _stream_tokens(url, key, tokens)  # warm up both
            base, ours = [], []
            for _ in range(repeats):
                base.append(lib())
                ours.append(_stream_tokens(url, key, tokens))
        finally:
            gateway.terminate()
            gateway.wait(30)
            direct.close()
    b, o = tokens / min(base), tokens / min(ours)
    print(f"{'decode tokens/s':28} {'in-process':>10} {'gateway':>10} {'ratio':>14}")
    print(f"{'SmolLM2 GGUF, llama.cpp':28} {b:10.1f} {o:10.1f} {o / b:13.2f}x")
    print(f"({tokens} tokens, best of {repeats}; streamed over HTTP through keys, limits and logs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="Sequential requests per side.")
    ap.add_argument("--seconds", type=float, default=5.0, help="Throughput window per side.")
    ap.add_argument("--concurrency", type=int, default=16, help="Requests in flight.")
    ap.add_argument("--decode", action="store_true", help="Decode tokens/s with llama.cpp.")
    ap.add_argument("--tokens", type=int, default=256, help="Tokens per --decode request.")
    ap.add_argument("--repeats", type=int, default=3, help="Best of N for --decode.")
    ap.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "upstream":
        import uvicorn

        uvicorn.run(stub_app, host="127.0.0.1", port=args.port, log_level="warning",
                    access_log=False)  # fmt: skip
        return
    if args.decode:
        decode(args.tokens, args.repeats)
        return

    luodi = str(Path(sys.executable).parent / "luodi")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUODI_")}
        env["LUODI_HOME"] = tmp
        up_port, gw_port = _port(), _port()
        upstream = subprocess.Popen(
            [sys.executable, __file__, "--role", "upstream", "--port", str(up_port)]
        )
        subprocess.run([luodi, "teams", "create", "bench"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        key = subprocess.run(
            [luodi, "keys", "create", "--team", "bench", "--role", "user", "--name", "bench",
             "--rpm", "1000000", "--tokens-per-day", "1000000000"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        cfg = Path(tmp) / "deploy.yaml"
        cfg.write_text(
            f"serve: {{port: {gw_port}}}\ndeployments:\n  - name: m\n    team: bench\n"
            f"    routes: [{{model: 'openai:http://127.0.0.1:{up_port}/v1#stub'}}]\n",
            encoding="utf-8",
        )
        cmd = [luodi, "serve", "--config", str(cfg)]
        if os.environ.get("BENCH_GATEWAY_PROFILE"):  # profile the gateway process
            cmd = [sys.executable, os.environ["BENCH_GATEWAY_PROFILE"], str(cfg)]
        gateway = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            _wait(f"http://127.0.0.1:{up_port}/", upstream)
            _wait(f"http://127.0.0.1:{gw_port}/healthz", gateway)
            direct_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
            gw_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
            d = sequential(direct_url, None, args.requests)
            g = sequential(gw_url, key, args.requests)
            td = asyncio.run(_throughput(direct_url, None, args.seconds, args.concurrency))
            tg = asyncio.run(_throughput(gw_url, key, args.seconds, args.concurrency))
        finally:
            gateway.terminate()
            upstream.terminate()
            gateway.wait(30)
            upstream.wait(30)
    print(f"{'':28} {'direct':>10} {'gateway':>10} {'added / ratio':>14}")
    p50d, p50g = statistics.median(d), statistics.median(g)
    print(f"{'latency p50 (ms)':28} {p50d:10.3f} {p50g:10.3f} {p50g - p50d:+14.3f}")
    print(f"{'latency p99 (ms)':28} {pct(d, .99):10.3f} {pct(g, .99):10.3f} "
          f"{pct(g, .99) - pct(d, .99):+14.3f}")  # fmt: skip
    print(f"{'throughput (req/s)':28} {td:10.0f} {tg:10.0f} {tg / td:14.2f}x")
    print(f"({args.requests} sequential requests per side; {args.seconds:g} s at "
          f"{args.concurrency} in flight)")  # fmt: skip


if __name__ == "__main__":
    main()
