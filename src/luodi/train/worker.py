"""Entry point of one torchrun worker: `python -m luodi.train.worker CONFIG RESULT`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from luodi.errors import LuodiError
from luodi.store import Store
from luodi.train.config import load_train_config
from luodi.train.distributed import is_main
from luodi.train.runner import run_train


def main(argv: list[str]) -> int:
    """Train the config at argv[0]; rank 0 writes the result (or the error) into the run dir."""
    cfg_path, result_path = Path(argv[0]), Path(argv[1])
    cfg = load_train_config(cfg_path)
    try:
        res = run_train(Store(), cfg)
    except LuodiError as exc:
        if is_main():
            error = {"message": exc.message, "exit_code": exc.exit_code}
            (result_path.parent / "error.json").write_text(json.dumps(error), encoding="utf-8")
        return exc.exit_code
    if is_main() and res is not None:
        result_path.write_text(res.model_dump_json(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
