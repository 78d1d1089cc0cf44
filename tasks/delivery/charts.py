"""Charts for the HTML report: matplotlib without a display, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import io
from types import ModuleType
from typing import Any

__all__ = ["png_base64", "pyplot"]


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (imported here, where charts are drawn: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_base64(fig: Any) -> str:
    """`fig` with dated x labels laid out, as a base64 PNG at 90 dpi; the figure is closed."""
    plt = pyplot()
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
