"""Stop signals: a requeue request (SIGUSR2) wins over SIGTERM in whichever order they come, even
while the process already waits to be killed; SIGTERM alone waits, then exits."""
import os
import signal
import threading

import pytest

from bench.engine import preemption
from bench.engine.preemption import StopRequests


class Requeued(Exception):
    pass


@pytest.fixture
def stops(monkeypatch):
    """StopRequests installed over handlers standing in for submitit's (USR2 requeues and exits)."""
    calls: list[str] = []

    def requeue(signum, frame):
        calls.append("requeue")
        raise Requeued

    previous = {signal.SIGUSR2: signal.signal(signal.SIGUSR2, requeue),
                signal.SIGTERM: signal.signal(signal.SIGTERM, lambda s, f: calls.append("bypass"))}
    requests = StopRequests()
    requests.install()
    yield requests, calls
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("order", [(signal.SIGTERM, signal.SIGUSR2), (signal.SIGUSR2, signal.SIGTERM)])
def test_usr2_requeues_whichever_signal_came_last(stops, order):
    requests, calls = stops
    for signum in order:
        os.kill(os.getpid(), signum)
    saved = []
    with pytest.raises(Requeued):
        requests.honour(lambda: saved.append(requests.signal_name))
    assert saved == ["SIGUSR2+SIGTERM"] and calls == ["requeue"] and not requests.pending


def test_usr2_arriving_while_waiting_to_be_killed_requeues(stops):
    requests, calls = stops
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR2)).start()
    with pytest.raises(Requeued):
        requests.honour(None)
    assert calls == ["bypass", "requeue"]


def test_sigterm_alone_waits_then_exits(stops, monkeypatch):
    monkeypatch.setattr(preemption, "KILL_WAIT_S", 0.2)
    requests, calls = stops
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(SystemExit):
        requests.honour(None)
    assert calls == ["bypass"]
