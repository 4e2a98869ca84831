"""`googlenet-tune --workers N`: a distributed search on this host, a chief and N workers."""

from __future__ import annotations

import os
import sys
import time
from typing import NamedTuple

from keras_googlenet_training import launcher
from keras_googlenet_training.oracle_server import CHIEF_ID, TUNE_ENV


class _Names(NamedTuple):  # what `work_dir` reads of a TuneConfig
    directory: str
    project_name: str
    overwrite: bool


def launch_local(child_args, workers, directory, project_name, out=None, host="127.0.0.1",
                 worker_grace=120.0, stop_grace=30.0, overwrite=False):
    """Run a distributed search here: a chief and `workers` workers on `host`.

    `child_args` are `googlenet-tune` arguments without `--workers`; with `overwrite`
    they carry `--overwrite`, so every role builds in the same staging directory and the
    chief swaps it in at the end (nothing is deleted here). The chief's output is
    streamed to `out`; each worker logs to `<project>/logs/<tuner_id>.log` (in the
    staging directory with `overwrite`). If any process fails, or on Ctrl-C/SIGTERM,
    every child is stopped. Returns an exit code.
    """
    from keras_googlenet.checks import positive_int
    from keras_googlenet_training import run_lock
    from keras_googlenet_training.tune_config import work_dir

    workers = positive_int("workers", workers)
    if "KERASTUNER_ORACLE_IP" in os.environ:
        raise ValueError("--workers starts its own chief and workers; unset "
                         "KERASTUNER_ORACLE_IP to use it.")
    out = out or sys.stdout
    project = work_dir(_Names(directory, project_name, overwrite))
    if overwrite and "--overwrite" not in child_args:
        child_args = [*child_args, "--overwrite"]
    # Refused at once if a search runs there, before its worker logs are truncated; the
    # chief takes the lock for the search itself.
    with run_lock.exclusive(os.path.join(directory, project_name), "googlenet-tune"):
        pass
    logs = os.path.join(project, "logs")
    os.makedirs(logs, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if k not in TUNE_ENV}
    base_env["PYTHONUNBUFFERED"] = "1"
    # Workers share the cores: without this each would start a thread per core.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    command = [sys.executable, "-m", "keras_googlenet_training.cli.tune", *child_args]
    try:
        # Held until the search ends: the chief's gRPC server shares it (SO_REUSEPORT), so
        # no other process can take it while the chief starts.
        with launcher.sigterm_as_interrupt(), launcher.reserve_ports(1, host) as reserved, \
                launcher.ProcessGroup(out) as group:
            port = reserved.ports[0]
            env = {**base_env, "KERASTUNER_TUNER_ID": CHIEF_ID, "KERASTUNER_ORACLE_IP": host,
                   "KERASTUNER_ORACLE_PORT": str(port)}
            group.start(CHIEF_ID, command, env, prefix=f"[{CHIEF_ID}] ")
            for index in range(workers):
                tuner_id = f"tuner{index}"
                worker_env = {**env, "KERASTUNER_TUNER_ID": tuner_id}
                worker_env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
                worker_env.setdefault("TF_NUM_INTEROP_THREADS", "1")
                group.start(tuner_id, command, worker_env,
                            log_path=os.path.join(logs, f"{tuner_id}.log"))
            out.write(f"launched chief (oracle on {host}:{port}) and {workers} worker(s), pids "
                      f"{[p.pid for p in group.processes.values()]}; worker logs in {logs}\n")
            out.flush()
            return _supervise(group, out, worker_grace, stop_grace)
    except KeyboardInterrupt as error:
        out.write("interrupted: stopping the chief and the workers (re-run to resume)\n")
        return launcher.interrupted_status(error)


def _supervise(group, out, worker_grace, stop_grace):
    """Wait for the search to end; stop it as soon as a process fails."""
    workers = [name for name in group.processes if name != CHIEF_ID]
    workers_done_at = None
    while True:
        code = group.processes[CHIEF_ID].poll()
        if code is not None:
            if code != 0:
                out.write(f"chief exited with code {code}; stopping the workers\n")
                return code
            return _after_the_chief(group, out, workers, stop_grace)
        for name in workers:
            if group.processes[name].poll() not in (None, 0):
                out.write(f"{name} failed with code {group.processes[name].returncode}; "
                          f"stopping the search. Last lines of {group.log_paths[name]}:\n"
                          f"{_last_lines(group.tail(name))}")
                return group.processes[name].returncode
        if all(group.processes[name].poll() == 0 for name in workers):
            workers_done_at = workers_done_at or time.monotonic()
            if time.monotonic() - workers_done_at > worker_grace:
                out.write("the workers finished but the chief did not; stopping it\n")
                return 1
        time.sleep(0.2)


def _after_the_chief(group, out, workers, stop_grace):
    # The chief only ends once no trial is running; a worker still alive then never got a
    # trial (it started late) and waits for a chief that is gone.
    deadline, idle = time.monotonic() + stop_grace, []
    for name in workers:
        if not group.wait(name, deadline - time.monotonic()):
            out.write(f"{name} got no trial before the search ended; stopping it\n")
            group.stop([name])
            idle.append(name)
    failed = [name for name in workers
              if group.processes[name].returncode != 0 and name not in idle]
    for name in failed:
        out.write(f"{name} exited with code {group.processes[name].returncode}:\n"
                  f"{_last_lines(group.tail(name))}")
    return 1 if failed else 0


def _last_lines(text, lines=20):
    return "".join(text.splitlines(keepends=True)[-lines:])
