"""Multi-process training: `launcher: torchrun` re-runs the same config under torchrun.

The launching process resolves the base (registering it once), writes the config into a run
folder and starts `torch.distributed.run` with `luodi.train.worker`. Every rank trains (the HF
Trainer sets up DDP from torchrun's environment); only rank 0 records the run, its metrics and
the model version, and writes the result the launcher returns. So a distributed run registers
exactly once, like a local one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from luodi.errors import BadInputError, StageFailedError
from luodi.store import ArtifactInfo, Store

if TYPE_CHECKING:
    from luodi.train.config import TrainConfig
    from luodi.train.runner import TrainResult

RUN_DIR_ENV = "LUODI_RUN_DIR"
"""Set by the launcher: the run folder every rank shares (checkpoints, config, result)."""


def rank() -> int:
    """This process's global rank (0 outside a distributed launch)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes of the launch (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on the process that records the run and registers the model."""
    return rank() == 0


def in_launch() -> bool:
    """True inside a process started by torchrun."""
    return "LOCAL_RANK" in os.environ


class NullRuns:
    """What non-zero ranks record: nothing (rank 0 keeps the run and its metrics)."""

    def start(self, *args: Any, **kwargs: Any) -> str:
        return ""

    def log(self, *args: Any, **kwargs: Any) -> None:
        return None

    def finish(self, *args: Any, **kwargs: Any) -> None:
        return None


def ddp_args() -> dict[str, Any]:
    """TrainingArguments for the current launch: gloo on CPU-only machines."""
    import torch

    if world_size() > 1 and not torch.cuda.is_available():
        return {"ddp_backend": "gloo"}
    return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store_env(store: Store) -> dict[str, str]:
    st = store.settings
    env = {"LUODI_HOME": str(st.home.resolve()), "LUODI_DATABASE_URL": st.db_url}
    env["LUODI_ARTIFACT_ROOT"] = str(st.artifacts)
    if st.user:
        env["LUODI_USER"] = st.user
    return env


def launch_torchrun(store: Store, cfg: TrainConfig, base: ArtifactInfo) -> TrainResult:
    """Run `cfg` on `cfg.nproc` local processes under torchrun; returns rank 0's result.

    Raises BadInputError for settings a distributed run cannot take (resume), and
    StageFailedError with the workers' last output lines when the launch fails.
    """
    from luodi.train.runner import TrainResult

    if cfg.resume:
        raise BadInputError("resume is not supported with launcher torchrun; resume locally")
    run_dir = store.settings.home.resolve() / "runs" / uuid.uuid4().hex
    run_dir.mkdir(parents=True)
    worker_cfg = cfg.model_copy(update={"base": base.ref})
    cfg_path = run_dir / "train_config.yaml"
    cfg_path.write_text(
        "# written by luodi for its torchrun workers (python -m luodi.train.worker)\n"
        + yaml.safe_dump(worker_cfg.model_dump(mode="json"), allow_unicode=True),
        encoding="utf-8",
    )
    result_path = run_dir / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={cfg.nproc}",
        "--nnodes=1",
        f"--master_port={_free_port()}",
        "-m",
        "luodi.train.worker",
        str(cfg_path),
        str(result_path),
    ]
    env = {**os.environ, **_store_env(store), RUN_DIR_ENV: str(run_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not result_path.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        error = _worker_error(run_dir)
        if error is not None:
            raise error
        raise StageFailedError(f"torchrun training failed (exit {proc.returncode}):\n{tail}")
    return TrainResult.model_validate_json(result_path.read_text(encoding="utf-8"))


def _worker_error(run_dir: Path) -> Exception | None:
    """The LuodiError rank 0 reported (so bad input stays bad input), if any."""
    path = run_dir / "error.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    cls = BadInputError if data.get("exit_code") == 2 else StageFailedError
    return cls(data["message"])
