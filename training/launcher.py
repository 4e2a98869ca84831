"""Local process groups for multi-worker training and distributed tuning.

`googlenet-train --workers N` and `googlenet-tune --workers N` both start a few copies of
themselves on this host. `ProcessGroup` starts each child in its own session (so its own
children go with it), streams one child's output to the terminal and logs the others',
and stops every child, by process group, when one fails, on Ctrl-C or SIGTERM, or when
the caller is done: no process outlives the launcher.

`reserve_ports` hands out free ports without the race of "bind port 0, close, pass the
number on" (another process can take the port in between).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time

# What a child prints when another process took its port first (TensorFlow's gRPC server).
PORT_TAKEN_MESSAGES = ("Address already in use", "Could not start gRPC server")


class PortReservation:
    """Ports bound here, with SO_REUSEPORT, and held until `release()`.

    While held, no other process can bind them, but a child whose server sets SO_REUSEPORT
    too can: grpcio's servers do (KerasTuner's oracle), so the tuning launcher holds its
    port until the search ends and there is no window in which it can be lost.
    TensorFlow's own gRPC server refuses a shared port, so the multi-worker launcher
    releases its ports just before starting the workers and starts them again on new
    ports in the rare case one was taken in between (`PORT_TAKEN_MESSAGES`).
    """

    def __init__(self, count, host="127.0.0.1"):
        # Imported here: the CLIs import this module before they quiet TensorFlow's start.
        from keras_googlenet.checks import positive_int

        count = positive_int("count", count)
        self.host = host
        self._sockets = []
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, 0))
        except OSError:
            self.release()
            raise
        self.ports = [s.getsockname()[1] for s in self._sockets]

    def release(self):
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def reserve_ports(count, host="127.0.0.1"):
    """`count` free ports on `host`, held until the reservation is released (a context
    manager): see `PortReservation`."""
    return PortReservation(count, host)


# The shell's statuses of a process stopped by Ctrl-C and by SIGTERM (what schedulers expect).
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: stopped like Ctrl-C, but exits 143."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into `Terminated` (a KeyboardInterrupt) in the main thread, so that
    `kill PID`, a job scheduler's timeout or Kubernetes stops a process the way Ctrl-C
    does: the CLIs and launchers clean up as on Ctrl-C, the trainer keeps its backup.
    `interrupted_status(error)` then gives 143 instead of 130."""

    def interrupted(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_status(error):
    """The exit status of a process stopped by the KeyboardInterrupt `error`."""
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED


class ProcessGroup:
    """Children started together and stopped together (a context manager).

    `start` runs a command in its own session; its output goes to `out` (line by line,
    after `prefix`) when `log_path` is None, else to that file. `close()`, called on
    leaving the `with` block however it is left, stops whatever still runs: SIGTERM to each
    child's process group, then SIGKILL after `grace` seconds.
    """

    def __init__(self, out, grace=5.0):
        self.out = out
        self.grace = grace
        self.processes = {}  # name -> Popen, in start order
        self.log_paths = {}
        self._recent = {}  # name -> last lines of a streamed child, for `tail`
        self._files = []
        self._pumps = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def start(self, name, command, env, log_path=None, prefix=""):
        if log_path is None:
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
            recent = self._recent[name] = collections.deque(maxlen=200)
            pump = threading.Thread(target=self._pump, args=(process.stdout, prefix, recent),
                                    daemon=True)
            pump.start()
            self._pumps.append(pump)
        else:
            log_file = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._files.append(log_file)
            self.log_paths[name] = log_path
            process = subprocess.Popen(command, env=env, stdout=log_file,
                                       stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
        self.processes[name] = process
        return process

    def _pump(self, stream, prefix, recent):
        for line in iter(stream.readline, ""):
            recent.append(line)
            self.out.write(f"{prefix}{line}")
            self.out.flush()
        stream.close()

    def returncodes(self):
        """{name: exit status, or None while it runs}."""
        return {name: p.poll() for name, p in self.processes.items()}

    def failed(self):
        """Names of the children that exited with a non-zero status, in start order."""
        return [name for name, code in self.returncodes().items() if code not in (None, 0)]

    def tail(self, name, chars=4000):
        """The end of a child's output (its log file, or the lines streamed so far)."""
        if name in self.log_paths:
            for log_file in self._files:
                log_file.flush()
            try:
                with open(self.log_paths[name], encoding="utf-8", errors="replace") as f:
                    return f.read()[-chars:]
            except OSError:
                return ""
        return "".join(self._recent.get(name, ()))[-chars:]

    def lost_a_port(self):
        """Whether a failed child says another process took its port."""
        return any(message in self.tail(name) for name in self.failed()
                   for message in PORT_TAKEN_MESSAGES)

    def wait(self, name, timeout):
        """Wait up to `timeout` s for one child; True when it has exited."""
        try:
            self.processes[name].wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, names=None):
        """Stop the named children (default: all) and everything they started."""
        chosen = [p for n, p in self.processes.items() if names is None or n in names]
        for process in chosen:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for process in chosen:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()

    def close(self):
        self.stop()
        for pump in self._pumps:
            pump.join(timeout=5)
        for log_file in self._files:
            log_file.close()
        self._files = []


def _signal_group(process, signum):
    try:
        os.killpg(process.pid, signum)  # the child leads its own session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass
