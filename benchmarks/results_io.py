"""Results files of the benchmarks: written so that a kill mid-write never loses earlier runs."""

from __future__ import annotations

import json
import pathlib
from typing import Any


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    """Write ``obj`` as JSON through a temporary file, so a kill never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)
