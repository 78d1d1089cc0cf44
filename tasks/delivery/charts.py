"""Charts for the HTML report: matplotlib without a display, legends beside the axes (never over a curve), figures
embedded as base64 PNG."""

from __future__ import annotations

import base64
import io
from types import ModuleType
from typing import Any

__all__ = ["legend_outside", "png_base64", "pyplot"]


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (imported here, where charts are drawn: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend_outside(axis: Any) -> Any:
    """The axis's legend to the right of its plotting area, top-aligned, so it covers no curve; returns it."""
    return axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def png_base64(fig: Any) -> str:
    """`fig` with dated x labels laid out, as a base64 PNG at 90 dpi, cropped to what it draws (legends beside the
    axes included); the figure is closed."""
    plt = pyplot()
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
