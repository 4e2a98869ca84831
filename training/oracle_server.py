"""The chief of a distributed search: who it is, and serving the oracle to the workers.

KerasTuner's processes find their role in `KERASTUNER_TUNER_ID`,
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`. The chief serves the oracle over
gRPC; the workers ask it for trials and report their results.

KerasTuner has no public API for the server, so this uses KerasTuner's internals
(the generated gRPC service and `OracleServicer`) through `keras_googlenet/_compat.py`;
pyproject pins keras-tuner below the next minor release and `tests/test_keras_internals.py`
fails loudly if they change.
"""

from __future__ import annotations

import os
import time

TUNE_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
CHIEF_ID = "chief"


def distributed_role(environ=None):
    """`"standalone"`, `"chief"` or `"worker"`, from KerasTuner's environment variables.

    The chief is the tuner id `chief` exactly. KerasTuner itself tests `"chief" in id`, so
    a worker id such as `mischief0` would make it a second chief: refused here.
    """
    environ = os.environ if environ is None else environ
    if "KERASTUNER_ORACLE_IP" not in environ:
        return "standalone"
    missing = [name for name in TUNE_ENV if name not in environ]
    if missing:
        raise ValueError(
            f"KERASTUNER_ORACLE_IP is set but {', '.join(missing)} is not: a distributed "
            "search needs all of " + ", ".join(TUNE_ENV) + "."
        )
    tuner_id = environ["KERASTUNER_TUNER_ID"]
    if tuner_id == CHIEF_ID:
        return "chief"
    if CHIEF_ID in tuner_id:
        raise ValueError(
            f"KERASTUNER_TUNER_ID={tuner_id!r}: a worker's id must not contain "
            f"{CHIEF_ID!r} (KerasTuner would take it for the chief); the chief's id is "
            f"exactly {CHIEF_ID!r}."
        )
    return "worker"


def serve_oracle(oracle, poll_seconds=0.5, environ=None):
    """Serve `oracle` to the workers (KerasTuner's chief protocol) until the search ends.

    KerasTuner's own chief loop polls every 20 s once a worker is told to stop; this one
    answers the same protocol and returns within `poll_seconds`.
    """
    from concurrent import futures

    import grpc

    from keras_googlenet import _compat

    environ = os.environ if environ is None else environ
    address = f"{environ['KERASTUNER_ORACLE_IP']}:{environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = _compat.serve_oracle_servicer(oracle, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise RuntimeError(
            f"the chief cannot listen on {address} (KERASTUNER_ORACLE_IP/PORT): is the port "
            "in use or the IP not an address of this host?"
        )
    server.start()
    try:
        while not _compat.oracle_search_over(oracle, servicer):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1)
