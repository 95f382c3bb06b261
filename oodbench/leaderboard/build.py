"""Rebuild the rendered leaderboard (README.md, leaderboard.csv, leaderboard.tex, index.html) from records, and on
request every record as a flat row (records.jsonl, records.parquet)."""
from __future__ import annotations

from pathlib import Path

from ..errors import OodbenchError
from ..files import atomic_write
from .html import to_html
from ..outputs import check_output_dir
from .flat import flat_rows, require_pyarrow, to_jsonl, to_parquet
from .render import to_csv, to_latex, to_markdown
from .store import load_records
from .table import leaderboard_frame

OUTPUTS = {"md": "README.md", "csv": "leaderboard.csv", "tex": "leaderboard.tex", "html": "index.html"}
FLAT_OUTPUTS = {"jsonl": "records.jsonl", "parquet": "records.parquet"}  # only when asked for
ALL_OUTPUTS = {**OUTPUTS, **FLAT_OUTPUTS}


def parse_formats(text: str) -> list[str]:
    """'md,csv' -> ['md', 'csv']; unknown names raise with the known ones."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in ALL_OUTPUTS]
    if unknown or not formats:
        raise OodbenchError(f"--formats {text!r}: choose from {', '.join(ALL_OUTPUTS)} (comma-separated)")
    return formats


def build_leaderboard(records_dir: str | Path, out_dir: str | Path, formats: list[str] | None = None,
                      panels_dir: str | Path | None = None, skip_bad: bool = False, max_panels: int = 4) -> list[Path]:
    """Check every output location and the options, read and check every record, then write each requested
    format atomically; return the written paths. Nothing is written when anything fails before the writes."""
    formats = formats or list(OUTPUTS)
    check_output_dir(out_dir, "--out")
    for fmt in formats:
        if (Path(out_dir) / ALL_OUTPUTS[fmt]).is_dir():
            raise OodbenchError(f"--out {out_dir}: {Path(out_dir) / ALL_OUTPUTS[fmt]}: is a folder, where the {fmt} "
                                f"output goes; move it away or give another --out")
    if "parquet" in formats:
        require_pyarrow()
    if max_panels < 0:
        raise OodbenchError(f"--max-panels {max_panels}: give a number of panels >= 0")
    if panels_dir is not None and not Path(panels_dir).is_dir():
        raise OodbenchError(f"panel folder {panels_dir} does not exist (PNG panels <method>__<dataset>__<id>.png, "
                            f"as `oodbench show` writes them)")
    records = load_records(records_dir, skip_bad=skip_bad)
    frame = leaderboard_frame(records)
    source = f"{len(records)} records in {records_dir}"
    flat = flat_rows(records, frame) if set(formats) & set(FLAT_OUTPUTS) else ([], [])
    texts: dict[str, str | bytes] = {}
    for fmt in formats:  # every text first: a failure while rendering leaves every old file as it was
        if fmt == "jsonl":
            texts[fmt] = to_jsonl(flat[0])
        elif fmt == "parquet":
            texts[fmt] = to_parquet(*flat)
        elif fmt == "md":
            texts[fmt] = to_markdown(frame, source)
        elif fmt == "csv":
            texts[fmt] = to_csv(frame)
        elif fmt == "tex":
            texts[fmt] = to_latex(frame)
        else:
            texts[fmt] = to_html(records, frame, source, panels_dir, max_panels)
    return [atomic_write(Path(out_dir) / ALL_OUTPUTS[fmt], text) for fmt, text in texts.items()]
