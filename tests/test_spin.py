"""The spin barrier of the split generation step, and the kernel's vectorised exp."""

import threading

import numba
import numpy as np

from models import kernels, spin


@numba.njit(nogil=True)
def _rounds(worker, workers, flags, data, rounds, seen):
    """Each round every worker writes its round number, meets the others, and records the smallest it sees."""
    for epoch in range(1, rounds + 1):
        data[worker * spin.STRIDE] = epoch
        if not spin.wait(flags, worker, workers, epoch):
            return epoch
        smallest = epoch
        for other in range(workers):
            smallest = min(smallest, data[other * spin.STRIDE])
        seen[worker, epoch - 1] = smallest
    return 0


def _run_threads(target, workers):
    results = [None] * workers
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, target(k))) for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_barrier_makes_every_write_before_it_visible_after_it():
    for workers in (2, 3):  # three threads on a two-core machine: the waiting ones yield their cores
        rounds = 2000
        flags = np.zeros(spin.flags_size(workers), np.int64)
        data = np.zeros(workers * spin.STRIDE, np.int64)
        seen = np.zeros((workers, rounds), np.int64)
        results = _run_threads(lambda k: _rounds(k, workers, flags, data, rounds, seen), workers)
        assert results == [0] * workers
        # No worker passed a barrier before every other had written that round (a round later at most).
        assert np.all(seen >= np.arange(1, rounds + 1))


def test_abort_releases_the_waiting_threads():
    workers = 3
    flags = np.zeros(spin.flags_size(workers), np.int64)
    data = np.zeros(workers * spin.STRIDE, np.int64)
    seen = np.zeros((workers, 10), np.int64)
    started = threading.Event()

    def worker(k):
        if k == 2:  # the failing worker never arrives; it aborts the run instead
            started.wait()
            spin.abort(flags, workers)
            return None
        if k == 0:
            started.set()
        return _rounds(k, workers, flags, data, 10, seen)

    assert _run_threads(worker, workers)[:2] == [1, 1]  # both gave up at the first barrier


def test_a_failing_worker_stops_the_others_and_raises(tiny_wavenet, monkeypatch):
    import pytest

    import models

    net = models.IncrementalWaveNet(tiny_wavenet(), engine="numba", split_cores=2)
    x = net.reset(1)
    real = kernels._split_worker

    def failing(worker, *args):
        if worker == 1:
            raise RuntimeError("worker 1 failed")
        return real(worker, *args)

    monkeypatch.setattr(kernels, "_split_worker", failing)
    with pytest.raises(RuntimeError, match="worker 1 failed"):
        net.advance(x, 20, np.full((20, 1, 2), 0.5))


def test_vectorised_exp_is_within_an_ulp_of_numpys():
    x = -np.concatenate([np.linspace(0.0, 720.0, 20001), np.random.default_rng(0).exponential(5.0, 20000)])
    out = np.empty_like(x)
    kernels._exp_nonpositive(x, out)
    expected = np.exp(np.maximum(x, -708.0))
    assert np.all(np.abs(out - expected) <= 2 * np.spacing(expected))
    assert out[0] == 1.0
