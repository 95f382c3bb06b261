"""Rebuild the rendered leaderboard (README.md, leaderboard.csv, leaderboard.tex, index.html) from records."""
from __future__ import annotations

from pathlib import Path

from ..errors import OodbenchError
from ..files import atomic_write
from .html import to_html
from .render import to_csv, to_latex, to_markdown
from .store import load_records
from .table import leaderboard_frame

OUTPUTS = {"md": "README.md", "csv": "leaderboard.csv", "tex": "leaderboard.tex", "html": "index.html"}


def parse_formats(text: str) -> list[str]:
    """'md,csv' -> ['md', 'csv']; unknown names raise with the known ones."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in OUTPUTS]
    if unknown or not formats:
        raise OodbenchError(f"--formats {text!r}: choose from {', '.join(OUTPUTS)} (comma-separated)")
    return formats


def build_leaderboard(records_dir: str | Path, out_dir: str | Path, formats: list[str] | None = None,
                      panels_dir: str | Path | None = None, skip_bad: bool = False, max_panels: int = 4) -> list[Path]:
    """Read and check every record, then write each requested format atomically; return the written paths."""
    records = load_records(records_dir, skip_bad=skip_bad)
    if panels_dir is not None and not Path(panels_dir).is_dir():
        raise OodbenchError(f"panel folder {panels_dir} does not exist (PNG panels <method>__<dataset>__<id>.png, "
                            f"as `oodbench show` writes them)")
    frame = leaderboard_frame(records)
    source = f"{len(records)} records in {records_dir}"
    written = []
    for fmt in formats or list(OUTPUTS):
        if fmt == "md":
            text = to_markdown(frame, source)
        elif fmt == "csv":
            text = to_csv(frame)
        elif fmt == "tex":
            text = to_latex(frame)
        else:
            text = to_html(records, frame, source, panels_dir, max_panels)
        written.append(atomic_write(Path(out_dir) / OUTPUTS[fmt], text))
    return written
