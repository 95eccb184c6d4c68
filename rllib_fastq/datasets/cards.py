"""Dataset cards, shared by every dataset factory: versions, checksums, card.json + README.md.

A card is a JSON document beside the data (``card.json``) with a human-readable ``README.md``;
both are written through a temporary file, so a killed run never leaves half a card.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from typing import Any

from rllib_fastq.data.io import write_json_atomic


def versions(*packages: str) -> dict[str, str]:
    """``{"python": ..., <package>: <installed version>, ..., "rllib_fastq": ...}`` in that order."""
    from rllib_fastq import __version__

    return {"python": platform.python_version(), **{p: metadata.version(p) for p in packages},
            "rllib_fastq": __version__}


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (the checksums cards record)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_card(directory: str | os.PathLike, card: dict[str, Any], readme: str, *, indent: int = 1) -> None:
    """Write ``card.json`` and ``README.md`` (the card's markdown) into ``directory``."""
    write_json_atomic(os.path.join(directory, "card.json"), card, indent=indent)
    path = os.path.join(directory, "README.md")
    with open(path + ".tmp", "w") as f:
        f.write(readme)
    os.replace(path + ".tmp", path)
