"""ablate's run protocol for Python training programs (standard library only).

Under an ablate worker the environment names everything (the project's
README, "Running your own program"): ABLATE_CONFIG, the job's parameters as a
JSON file; ABLATE_METRICS_FD, the descriptor metrics lines go to;
ABLATE_CHECKPOINT_DIR, where checkpoints are written; ABLATE_RESUME_STEP, the
step of the checkpoint restored there (0 on a fresh start). The worker sends
SIGTERM when it stops: stopping() then turns true, and the program should
checkpoint and exit 0 within the worker's grace.

Outside ablate every function still works, so a script runs on its own:
metrics lines go to stdout, config() is {} and checkpoints go to ./checkpoint.
"""

import json
import math
import numbers
import os
import re
import signal
import sys

__all__ = [
    "checkpoint",
    "checkpoint_dir",
    "config",
    "in_ablate",
    "log",
    "resume_step",
    "stopping",
]

# The worker's rule for metric names: 1-128 of these characters.
_METRIC_NAME = re.compile(r"[A-Za-z0-9_\-./:]{1,128}\Z")

_metrics_file = None
_last_step = None
_metric_steps = {}  # each metric's last step logged
_stopping = False


def in_ablate():
    """True when an ablate worker started this process."""
    return "ABLATE_METRICS_FD" in os.environ


def config():
    """The job's parameters: the JSON object in ABLATE_CONFIG; {} outside ablate."""
    path = os.environ.get("ABLATE_CONFIG")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def checkpoint_dir():
    """The folder to write checkpoints into (created if missing)."""
    path = os.environ.get("ABLATE_CHECKPOINT_DIR") or os.path.join(os.getcwd(), "checkpoint")
    os.makedirs(path, exist_ok=True)
    return path


def resume_step():
    """The step of the checkpoint restored into checkpoint_dir(); 0: start afresh."""
    return int(os.environ.get("ABLATE_RESUME_STEP", "0") or 0)


def stopping():
    """True once SIGTERM arrived: checkpoint, announce it and exit 0."""
    return _stopping


def log(step, metrics=None, **named):
    """Reports metrics at `step`: log(100, {"valid/loss": 1.2}) or log(100, loss=1.2).

    Raises ValueError for what the worker would refuse: a step that is not a
    non-negative integer or is below the last one, no metric, a bad name, a
    value that is not a finite number.
    """
    global _last_step
    values = dict(metrics or {})
    values.update(named)
    _check_step(step)
    if _last_step is not None and step < _last_step:
        raise ValueError("step %d is below the last step logged, %d" % (step, _last_step))
    if not values:
        raise ValueError("log(%d) without a metric" % step)
    line = {"step": int(step)}
    for name, value in values.items():
        if not isinstance(name, str) or not _METRIC_NAME.match(name) or name in ("step", "checkpoint"):
            raise ValueError("bad metric name %r: 1-128 of letters, digits and _ - . / :" % (name,))
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            value = _as_float(name, value)
        if not math.isfinite(value):
            raise ValueError("%s is %r at step %d, not a finite number" % (name, value, step))
        if name in _metric_steps and _metric_steps[name] >= step:
            raise ValueError("%s was already logged at step %d" % (name, _metric_steps[name]))
        line[name] = float(value) if not isinstance(value, int) else value
    for name in values:
        _metric_steps[name] = int(step)
    _last_step = int(step)
    _write(line)


def checkpoint(step):
    """Announces that checkpoint_dir() now holds the state after `step`.

    Call it once the checkpoint is completely written; the worker pauses this
    process while it archives the folder and uploads it.
    """
    _check_step(step)
    if step < 1:
        raise ValueError("a checkpoint's step is at least 1, not %r" % (step,))
    _write({"checkpoint": int(step)})


def _check_step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError("step must be a non-negative integer, not %r" % (step,))


def _as_float(name, value):
    # Tensors and numpy scalars: anything float() takes, except bools and strings.
    if isinstance(value, (bool, str, bytes)):
        raise ValueError("%s is %r, not a number" % (name, value))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError("%s is %r, not a number" % (name, value)) from None


def _write(line):
    global _metrics_file
    text = json.dumps(line, separators=(", ", ": ")) + "\n"
    if not in_ablate():
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if _metrics_file is None:
        _metrics_file = os.fdopen(int(os.environ["ABLATE_METRICS_FD"]), "w", encoding="utf-8",
                                  closefd=False)
    _metrics_file.write(text)
    _metrics_file.flush()


def _on_sigterm(signum, frame):
    global _stopping
    _stopping = True


# Only under a worker: outside it SIGTERM keeps its usual meaning.
if in_ablate():
    signal.signal(signal.SIGTERM, _on_sigterm)
