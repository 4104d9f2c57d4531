"""Writing files atomically: a reader, or a run killed mid-write, never sees half a file.

Each helper writes a hidden temporary sibling (`.name.XXXX.tmp.ext`, same folder, so the rename stays on one
file system) and renames it onto the target with `os.replace`.
"""

import json
import os
import tempfile
from pathlib import Path

from data import faults


def atomic_path(path):
    """Returns a temporary sibling of `path` with the same suffix, for writing before `os.replace`."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    return Path(name)


def folder_problem(folder):
    """Why files cannot be created in `folder` (made first if it is missing), or `None` when they can.

    Scripts call this before any slow work, so that a run or a generation that could not save its result is
    refused at once. The nearest existing ancestor must be a folder in which a file can be created; that is
    tried with a hidden probe file, created and removed at once, since permission bits do not tell (root
    ignores them, and some file systems, such as /proc, refuse new files whatever they say).

    Example:

    >>> folder_problem("notes.txt/run")
    'notes.txt is a file, not a folder'
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        handle, name = tempfile.mkstemp(prefix=".wavegen-probe.", dir=existing)
    except OSError as error:
        return f"cannot create files in {existing} ({error.strerror or error})"
    os.close(handle)
    os.unlink(name)
    return None


def replace_atomically(write, path):
    """Calls `write(temporary_path)` and renames the result onto `path`, so readers never see a partial file."""
    path = Path(path)
    temporary = atomic_path(path)
    try:
        write(temporary)
        faults.reached("temporary-written", path.name)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path, data):
    """Writes `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    replace_atomically(lambda tmp: Path(tmp).write_text(text), path)
