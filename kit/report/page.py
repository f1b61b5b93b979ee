"""A static HTML page of figures, tables and skip notes, written atomically beside its PNGs.

The page opens from disk: every image is a relative link to a PNG in the same folder, and only
figures that were written are linked.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from kit.files import atomic_path

_STYLE = """
body { font-family: sans-serif; max-width: 1300px; margin: 1em auto; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f4f4f4; }
.skip { color: #8a6d3b; background: #fcf8e3; padding: 4px 8px; }
.caption { color: #555; font-size: 0.9em; }
footer { margin-top: 3em; color: #777; font-size: 0.8em; }
"""


def save_figure(fig: Figure, path: Path, dpi: int = 80) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically and release its memory."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    fig.clear()
    return Path(path)


class Page:
    """An HTML report being assembled in ``out_dir``.

    Parameters
    ----------
    title : page title
    out_dir : folder of the page and of its figures
    """

    def __init__(self, title: str, out_dir: Path) -> None:
        self.title = title
        self.out_dir = Path(out_dir)
        self.parts: list[str] = []
        self.figures: list[Path] = []
        self.notes: list[str] = []

    def section(self, title: str) -> None:
        """Start a section with a heading."""
        self.parts.append(f"<h2>{html.escape(title)}</h2>")

    def text(self, text: str) -> None:
        """A paragraph of plain text."""
        self.parts.append(f'<p class="caption">{html.escape(text)}</p>')

    def note(self, text: str) -> None:
        """A one-line note saying why something was skipped."""
        self.notes.append(text)
        self.parts.append(f'<p class="skip">skipped: {html.escape(text)}</p>')

    def figure(self, name: str, fig: Figure, caption: str = "") -> None:
        """Save ``fig`` as ``out_dir/name`` and link it (the link is added only once the file exists)."""
        path = save_figure(fig, self.out_dir / name)
        self.figures.append(path)
        alt = html.escape(caption or name)
        self.parts.append(f'<figure><a href="{html.escape(name)}"><img src="{html.escape(name)}" alt="{alt}"></a>'
                          + (f'<figcaption class="caption">{html.escape(caption)}</figcaption>' if caption else "")
                          + "</figure>")

    def table(self, frame: pd.DataFrame, caption: str = "", float_format: str = "{:.4f}") -> None:
        """An HTML table of ``frame`` (index dropped, values escaped)."""
        if caption:
            self.text(caption)
        self.parts.append(frame.to_html(index=False, escape=True, na_rep="",
                                        float_format=float_format.format, border=0))

    def html(self) -> str:
        """The whole page as a string."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        return "\n".join([
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
            f'<p class="caption">written {stamp}</p>',
            *self.parts,
            "<footer>Data: PLAsTiCC team, simulated LSST light curves (DOI 10.5281/zenodo.2539456, CC BY 4.0).",
            "</footer></body></html>",
        ]) + "\n"

    def write(self, name: str = "index.html") -> Path:
        """Write the page atomically as ``out_dir/name``."""
        path = self.out_dir / name
        with atomic_path(path) as tmp:
            tmp.write_text(self.html(), encoding="utf-8")
        return path
