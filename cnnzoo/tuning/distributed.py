"""Distributed search with keras-tuner's chief/worker mode (`KERASTUNER_*` variables).

Each worker touches a heartbeat file in the shared project directory
(`<project>/cnnzoo_heartbeats/<tuner id>`). The chief's oracle (see
`tuning_engine._OracleMixin`) hands the unfinished trial of a worker that
stopped beating to the next worker that asks, and keeps a worker that ran out
of trials waiting while others are busy, so that it can take such a trial
over. `serve_chief` serves the oracle until every worker is done or gone.
"""

import logging
import os
import threading
import time
from pathlib import Path

from cnnzoo import _compat
from cnnzoo.errors import ConfigError

dist_utils = _compat.kt_module("distribute.utils")
trial_module = _compat.kt_module("engine.trial")

__all__ = ["is_chief", "is_worker", "PatientClient", "Heartbeat", "serve_chief", "HEARTBEATS_DIR"]

log = logging.getLogger("cnnzoo.tuning")

HEARTBEATS_DIR = "cnnzoo_heartbeats"
_IDLE_POLL_S = 0.5


def is_chief():
    """True in the chief process of a distributed search (`KERASTUNER_TUNER_ID` contains "chief")."""
    return dist_utils.has_chief_oracle() and dist_utils.is_chief_oracle()


def is_worker():
    """True in a worker process of a distributed search."""
    return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()


class PatientClient:
    """Wraps a worker's `OracleClient`: waits a little after an IDLE answer instead of spinning."""

    def __init__(self, client):
        self._client = client

    def create_trial(self, tuner_id):
        trial = self._client.create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.IDLE:
            time.sleep(_IDLE_POLL_S)
        return trial

    def __getattr__(self, name):
        return getattr(self._client, name)


class Heartbeat:
    """Touches `<dir>/<tuner_id>` every `interval` seconds from a daemon thread."""

    def __init__(self, directory, tuner_id, interval):
        self.path = Path(directory) / tuner_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cnnzoo-heartbeat-{tuner_id}", daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.path.touch()
            except OSError:
                pass
            self._stop.wait(self.interval)

    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def serve_chief(tuner, poll=0.2):
    """Runs the chief: serves the oracle over gRPC until all workers are done or gone.

    keras-tuner's own server checks for the end every 20 s; this one polls
    every `poll` seconds and stops the gRPC server cleanly.
    """
    import concurrent.futures

    import grpc

    protos = _compat.kt_module("protos")
    oracle_chief = _compat.kt_module("distribute.oracle_chief")
    tuner.save()
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(
            f"`KERASTUNER_ORACLE_IP`/`KERASTUNER_ORACLE_PORT` must name a free local address for "
            f"the chief to listen on. Received: {address!r}. Pick another port."
        )
    server.start()
    log.info("chief oracle listening on %s", address)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2).wait()
