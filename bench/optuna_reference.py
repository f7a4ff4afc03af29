#!/usr/bin/python3
"""Optuna on SQLite, for coordinator_load's side-by-side comparison.

Reports learning-curve points the way an Optuna user does: one
trial.report(value, step) per point, each a committed write to Optuna's RDB
storage on a SQLite file (the storage URL as the docs show it, nothing
tuned). Several processes share one study, as distributed Optuna workers do;
each asks for a trial, reports --points-per-trial points, tells the result
and asks for the next, until --seconds are up. Committed points are counted
as rows of trial_intermediate_values.

Runs on Debian's python3-optuna (3.1):

    /usr/bin/python3 bench/optuna_reference.py --seconds 10 --processes 2
Prints one JSON object.
"""
import argparse
import json
import multiprocessing
import os
import sqlite3
import tempfile
import time

import optuna
import sqlalchemy

def value_at(step):
    """A decaying curve, like coordinator_load's."""
    return 1.5 + 3.0 / step**0.5


def report_until(url, study_name, points_per_trial, ready, go, deadline, results):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url)
    # Importing and connecting is not timed: all children start together.
    ready.put(os.getpid())
    go.wait()
    deadline = deadline.value
    points = trials = 0
    while time.time() < deadline:
        trial = study.ask()
        trials += 1
        step = 0
        while step < points_per_trial and time.time() < deadline:
            step += 1
            trial.report(value_at(step), step)
            points += 1
        study.tell(trial, value_at(max(step, 1)))
    results.put({"points": points, "trials": trials, "finished": time.time()})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--points-per-trial", type=int, default=1000)
    parser.add_argument("--dir", help="where the SQLite file goes (default: a temp dir)")
    args = parser.parse_args()

    directory = args.dir or tempfile.mkdtemp(prefix="optuna_reference-")
    path = os.path.join(directory, "optuna.db")
    if os.path.exists(path):
        os.remove(path)
    url = "sqlite:///" + path
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="reference", storage=url)

    spawn = multiprocessing.get_context("spawn")
    ready, results, go = spawn.Queue(), spawn.Queue(), spawn.Event()
    deadline = spawn.Value("d", 0.0)
    children = [
        spawn.Process(target=report_until,
                      args=(url, "reference", args.points_per_trial, ready, go, deadline, results))
        for _ in range(args.processes)
    ]
    for child in children:
        child.start()
    for _ in children:
        ready.get()
    start = time.time()
    deadline.value = start + args.seconds
    go.set()
    reports = [results.get() for _ in children]
    for child in children:
        child.join()

    with sqlite3.connect(path) as db:
        committed = db.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()[0]
    seconds = max(r["finished"] for r in reports) - start
    print(json.dumps({
        "optuna_version": optuna.__version__,
        "sqlalchemy_version": sqlalchemy.__version__,
        "sqlite_version": sqlite3.sqlite_version,
        "processes": args.processes,
        "points_per_trial": args.points_per_trial,
        "seconds": seconds,
        "reported_points": sum(r["points"] for r in reports),
        "trials": sum(r["trials"] for r in reports),
        "committed_points": committed,
        "committed_points_per_s": committed / seconds,
    }))


if __name__ == "__main__":
    main()
