"""Writing files atomically: a reader, or a run killed mid-write, never sees half a file.

Each helper writes a hidden temporary sibling (`.name.XXXX.tmp.ext`, same folder, so the rename stays on one
file system) and renames it onto the target with `os.replace`.
"""

import json
import os
import tempfile
from pathlib import Path


def atomic_path(path):
    """Returns a temporary sibling of `path` with the same suffix, for writing before `os.replace`."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    return Path(name)


def replace_atomically(write, path):
    """Calls `write(temporary_path)` and renames the result onto `path`, so readers never see a partial file."""
    path = Path(path)
    temporary = atomic_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path, data):
    """Writes `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    replace_atomically(lambda tmp: Path(tmp).write_text(text), path)
