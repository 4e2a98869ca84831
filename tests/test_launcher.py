"""The local launcher: ports that cannot be lost, and a group that stops as one."""

import errno
import io
import os
import socket
import sys
import time

import pytest
from _processes import alive as _alive

from keras_googlenet_training import launcher

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_reserved_port_cannot_be_taken_until_released():
    """The old helpers closed their socket before the child bound the port, so any
    process could take it in between."""
    with launcher.reserve_ports(2) as reservation:
        assert len(set(reservation.ports)) == 2
        for port in reservation.ports:
            intruder = socket.socket()
            with pytest.raises(OSError) as error:
                intruder.bind(("127.0.0.1", port))
            intruder.close()
            assert error.value.errno == errno.EADDRINUSE
    reused = socket.socket()
    reused.bind(("127.0.0.1", reservation.ports[0]))  # free again once released
    reused.close()


def test_a_grpc_server_binds_the_port_held_for_it():
    """What the tuning launcher relies on: KerasTuner's oracle (a grpcio server) shares
    the held port, so the port is never free while the chief starts."""
    from concurrent import futures

    grpc = pytest.importorskip("grpc")
    with launcher.reserve_ports(1) as reservation:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        assert server.add_insecure_port(f"127.0.0.1:{reservation.ports[0]}") != 0
        server.stop(0)


def test_one_failing_child_can_stop_the_whole_group(tmp_path):
    out = io.StringIO()
    with launcher.ProcessGroup(out, grace=2.0) as group:
        group.start("chief", [sys.executable, "-c", "print('hello'); raise SystemExit(3)"],
                    dict(os.environ), prefix="[chief] ")
        sleepers = [group.start(f"worker {i}", SLEEPER, dict(os.environ),
                                log_path=str(tmp_path / f"w{i}.log")) for i in range(2)]
        deadline = time.monotonic() + 30
        while not group.failed() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group.failed() == ["chief"]
        assert all(p.poll() is None for p in sleepers)
    assert not [p.pid for p in sleepers if _alive(p.pid)]
    assert out.getvalue() == "[chief] hello\n"
    assert group.tail("chief") == "hello\n"


def test_a_lost_port_is_recognised_in_a_failed_childs_output(tmp_path):
    message = "E0000 grpc_server_lib.cc] Could not start gRPC server"
    with launcher.ProcessGroup(io.StringIO()) as group:
        group.start("worker 1", [sys.executable, "-c", f"print({message!r}); raise SystemExit(1)"],
                    dict(os.environ), log_path=str(tmp_path / "w1.log"))
        group.wait("worker 1", timeout=30)
        assert group.lost_a_port()
