"""Slots: GPUs and cores held by one step at a time, all or nothing, freed however a holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lamflow.ops.runtime import slots
from lamflow.ops.runtime.slots import Machine, Needs


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """A pool of 2 GPUs (named as CUDA_VISIBLE_DEVICES would) and 4 cores."""
    folder = tmp_path / "slots"
    slots.lay_out(folder, Machine(gpus=("2", "3"), cores=(0, 1, 2, 3)))
    return folder


def test_needs_read_from_their_variable_and_bad_text_is_refused():
    assert Needs.parse("gpus=2,cores=8") == Needs(2, 8)
    assert str(Needs(1, 3)) == "gpus=1,cores=3"
    with pytest.raises(ValueError, match="expected gpus=N,cores=M"):
        Needs.parse("gpus=two")


def test_two_steps_never_get_the_same_gpu_or_core_and_a_third_waits(pool):
    first = slots.acquire(pool, "a", Needs(1, 2))
    second = slots.acquire(pool, "b", Needs(1, 2))
    assert {first.gpus, second.gpus} == {("2",), ("3",)}
    assert not set(first.cores) & set(second.cores)
    machine = slots.read_machine(pool)
    assert slots.try_acquire(pool, machine, Needs(1, 1)) is None  # no GPU left
    assert slots.try_acquire(pool, machine, Needs(0, 1)) is None  # no core left
    first.release()
    third = slots.acquire(pool, "c", Needs(1, 1))
    assert third.gpus == first.gpus
    second.release()
    third.release()


def test_taking_units_is_all_or_nothing(pool):
    holder = slots.acquire(pool, "a", Needs(1, 1))
    machine = slots.read_machine(pool)
    assert slots.try_acquire(pool, machine, Needs(2, 1)) is None
    # the refused attempt kept nothing: the free GPU and the three free cores are still there
    other = slots.acquire(pool, "b", Needs(1, 3))
    assert other.gpus == ("3",) and len(other.cores) == 3
    holder.release()
    other.release()


def test_a_step_asking_more_than_the_machine_has_is_refused(pool):
    with pytest.raises(ValueError, match="needs 3 GPU"):
        slots.acquire(pool, "big", Needs(3, 1))


def test_a_waiting_step_gets_the_units_when_the_holder_releases(pool):
    holder = slots.acquire(pool, "a", Needs(2, 4))
    started = time.monotonic()
    release = __import__("threading").Timer(0.3, holder.release)
    release.start()
    waiter = slots.acquire(pool, "b", Needs(1, 1))
    assert time.monotonic() - started >= 0.25 and waiter.waited_s >= 0.25
    waiter.release()


HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from lamflow.ops.runtime import slots
    with slots.held():
        print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
        if sys.argv[1] == "fail":
            raise SystemExit(1)
        time.sleep(60)
    """
)


@pytest.mark.parametrize("ending", ["fail", "kill"])
def test_a_step_that_fails_or_is_killed_frees_its_units(pool, ending):
    env = {
        **os.environ,
        slots.POOL_ENV: str(pool),
        slots.KEY_ENV: "holder",
        slots.NEEDS_ENV: "gpus=2,cores=4",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ending], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "2,3"  # it holds everything now
    machine = slots.read_machine(pool)
    if ending == "kill":
        assert slots.try_acquire(pool, machine, Needs(0, 1)) is None
        assert slots.holding_now(slots.read_grants(pool)["holder"])
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    got = slots.try_acquire(pool, machine, Needs(2, 4))
    assert got is not None
    for f in got[2]:
        f.close()
    assert not slots.holding_now(slots.read_grants(pool)["holder"])


def test_held_sets_the_step_up_and_puts_everything_back(pool, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with slots.held() as nothing:  # outside a local run: no variables, nothing happens
        assert nothing is None and os.environ["OMP_NUM_THREADS"] == "7"
    monkeypatch.setenv(slots.POOL_ENV, str(pool))
    monkeypatch.setenv(slots.KEY_ENV, "train-x")
    monkeypatch.setenv(slots.NEEDS_ENV, "gpus=2,cores=1")
    with slots.held() as grant:
        assert grant is not None and grant.gpus == ("2", "3") and len(grant.cores) == 1
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
        assert os.environ["OMP_NUM_THREADS"] == os.environ["DP_INTRA_OP_PARALLELISM_THREADS"] == "1"
        assert os.environ["DP_INTER_OP_PARALLELISM_THREADS"] == "1"
        assert os.environ[slots.NPROC_ENV] == "2"  # training under torchrun, one process per GPU
        record = slots.read_grants(pool)["train-x"]
        assert record["gpus"] == ["2", "3"] and slots.holding_now(record)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "CUDA_VISIBLE_DEVICES" not in os.environ
    assert slots.NPROC_ENV not in os.environ
    assert not slots.holding_now(slots.read_grants(pool)["train-x"])


def test_a_step_without_gpus_sees_none(pool, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv(slots.POOL_ENV, str(pool))
    monkeypatch.setenv(slots.KEY_ENV, "test-x")
    monkeypatch.setenv(slots.NEEDS_ENV, "gpus=0,cores=1")
    with slots.held():
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
