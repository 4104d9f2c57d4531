"""A test hook: stop the process at an exact point of a run, as `kill -9` or a Ctrl-C would.

Set `WAVEGEN_KILL_AT` to `point:n` to send this process SIGKILL the n-th time it reaches `point`, or to
`point:n:SIGNAL` to send another signal (`SIGINT`, `SIGTERM`) that its own handler then takes. The process
signals itself, so the moment is exact: SIGKILL ends it there, and a handled signal's handler runs before the
code after the point. Several comma-separated entries may be given; each counts its point from the process's
start. The tests use it to kill a run at every moment that matters instead of at random times:

    WAVEGEN_KILL_AT=checkpoint-saved:2 python train_wavenet.py ...   # the 2nd checkpoint is written, not yet latest

Points (in the order an epoch reaches them):

- `epoch-begin`: an epoch's training starts (`run.Guard`).
- `step-end`: a training step ends, before the run's own checks of it (`run.Guard`).
- `history-written`: history.csv holds the epoch just finished (`run.RunLog`).
- `temporary-written`: a file written atomically is complete under its temporary name but not yet renamed
  (`data.files.replace_atomically`); `temporary-written/NAME` counts only files named NAME (`model.keras`).
- `checkpoint-saved`: a checkpoint folder is written whole; `checkpoints/latest.json` still names the one before.
- `pointer-switched`: `latest.json` names the new checkpoint; the folders it replaces are not yet removed.
- `sample-written`: SaveAudio has written the epoch's WAV and PNG (`callbacks.SaveAudio`).

Unset, the hook costs one check of a module-level constant per point reached.
"""

import os
import signal

VARIABLE = "WAVEGEN_KILL_AT"
POINTS = ("epoch-begin", "step-end", "history-written", "temporary-written", "checkpoint-saved", "pointer-switched",
          "sample-written")


def _plan(text):
    """`{point: [(occurrence, signal), ...]}` from the variable's value."""
    plan = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        point, _, rest = entry.partition(":")
        occurrence, _, name = rest.partition(":")
        signum = getattr(signal, name or "SIGKILL", None)
        base, slash, file_name = point.partition("/")
        known = base in POINTS and (not slash or (base == "temporary-written" and file_name and "/" not in file_name))
        if not known or not occurrence.isdigit() or int(occurrence) < 1 or not isinstance(signum, signal.Signals):
            raise ValueError(f"{VARIABLE}={text!r}: each entry is point:n or point:n:SIGNAL, with point one of "
                             f"{', '.join(POINTS)} (or temporary-written/NAME), n >= 1 and SIGNAL a name such as "
                             "SIGINT")
        plan.setdefault(point, []).append((int(occurrence), signum))
    return plan


PLAN = _plan(os.environ.get(VARIABLE, ""))
_counts = {}


def reached(point, name=None):
    """Marks that the process has reached `point` (`point/name` too, when a file `name` is given), and sends the
    signal planned for this occurrence, if any. Does nothing unless `WAVEGEN_KILL_AT` was set at start."""
    if not PLAN:
        return
    for key in (point, f"{point}/{name}") if name else (point,):
        _counts[key] = count = _counts.get(key, 0) + 1
        for occurrence, signum in PLAN.get(key, ()):
            if occurrence == count:
                os.kill(os.getpid(), signum)
