"""Loss curves of training runs as PNG files (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

CURVES = ("loss", "eval_loss")


def loss_curve(series: dict[str, list[tuple[int, float]]], path: Path, title: str) -> bool:
    """Plot training (and validation) loss by step into `path`; False when there is no loss."""
    present = [k for k in CURVES if series.get(k)]
    if not present:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in present:
        steps, values = zip(*series[key], strict=True)
        ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
