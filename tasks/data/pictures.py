"""Figures as PNG bytes, for artifacts: one place that knows matplotlib runs headless here.

matplotlib is imported on the first figure, not with this module: every flow run's process imports the
flows, and most runs draw nothing (it was a sixth of a flow's start-up)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any, Callable[[], bytes]]]:
    """`plt.subplots(...)` plus a `png()` that renders it; the figure is closed however the block ends."""
    plt = _pyplot()
    fig, axes = plt.subplots(*args, **kwargs)

    def png() -> bytes:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    try:
        yield fig, axes, png
    finally:
        plt.close(fig)


def inline_image(png: bytes, alt: str) -> str:
    """Markdown image with the PNG inline: a Prefect artifact then needs no image server the browser can reach."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
