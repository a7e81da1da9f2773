"""The machine as the local engine hands it out: GPUs and cores found, each step's share, plans that
cannot fit refused (fake device and core counts: these run on any machine)."""

from __future__ import annotations

import os

import pytest

from lamflow.ops import dp
from lamflow.ops.runtime.slots import Machine, Needs
from lamflow.workflows.api import validate
from lamflow.workflows.engines import machine as m
from lamflow.workflows.errors import UsageError
from lamflow.workflows.settings import Settings
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def demo_plan():
    return validate(EXAMPLES / "demo.yaml")[1]


@pytest.fixture(scope="module")
def gpu_plan():
    """pretrain asks for 4 GPUs, fine-tunes for 1 (resources: of examples/argo-gpu.yaml)."""
    return validate(EXAMPLES / "argo-gpu.yaml")[1]


def test_gpus_come_from_cuda_visible_devices_then_the_driver_and_settings_override(monkeypatch, tmp_path):
    settings = Settings()
    assert m.detect(settings, {"CUDA_VISIBLE_DEVICES": "2,3"}).gpus == ("2", "3")
    assert m.detect(settings, {"CUDA_VISIBLE_DEVICES": "GPU-5f1a"}).gpus == ("GPU-5f1a",)
    assert m.detect(settings, {"CUDA_VISIBLE_DEVICES": "-1"}).gpus == ()
    assert m.detect(settings, {"CUDA_VISIBLE_DEVICES": "1,-1,2"}).gpus == ("1",)  # CUDA stops there
    assert m.detect(settings, {"CUDA_VISIBLE_DEVICES": ""}).gpus == ()
    driver = tmp_path / "gpus"
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (driver / bus).mkdir(parents=True)
    monkeypatch.setattr(dp, "NVIDIA_GPUS", driver)
    assert m.detect(settings, {}).gpus == ("0", "1", "2")
    assert m.detect(Settings(local_gpus=1), {}).gpus == ("0",)
    assert m.detect(Settings(local_gpus=0), {"CUDA_VISIBLE_DEVICES": "4"}).gpus == ()
    monkeypatch.setattr(dp, "NVIDIA_GPUS", tmp_path / "none")
    assert m.detect(Settings(local_gpus=2), {}).gpus == ("0", "1")  # a fake machine for tests


def test_cores_are_those_this_process_may_use_unless_set():
    real = sorted(os.sched_getaffinity(0))
    assert m.detect(Settings(local_cores=None), {}).cores == tuple(real)  # (tests set it: conftest.py)
    assert m.detect(Settings(local_cores=1), {}).cores == (real[0],)
    assert len(m.detect(Settings(local_cores=len(real) + 3), {}).cores) == len(real) + 3


def _needs(plan, settings, machine):
    return {step.key: m.needs_of(step, plan, settings, machine) for step in plan.steps}


def test_training_steps_get_one_gpu_each_and_the_cores_split_between_the_gpus(demo_plan):
    machine = Machine(gpus=("0", "1", "2", "3"), cores=tuple(range(16)))
    needs = _needs(demo_plan, Settings(), machine)
    assert needs["pretrain"] == Needs(gpus=1, cores=4)
    assert needs["finetune-gete"] == Needs(gpus=1, cores=4)
    assert needs["freeze-water"] == Needs(gpus=0, cores=1)  # short steps: a core, no GPU
    assert m.pool_size(Settings(), machine) == 16
    wide = Settings(local_train_gpus=2, local_train_cores=6, local_step_gpus=1, local_step_cores=2)
    needs = _needs(demo_plan, wide, machine)
    assert needs["pretrain"] == Needs(gpus=2, cores=6) and needs["freeze-water"] == Needs(gpus=1, cores=2)
    assert m.pool_size(wide, machine) == 8


def test_without_gpus_training_takes_half_the_cores_at_most_four_or_all_one_at_a_time(demo_plan):
    two = Machine(gpus=(), cores=(0, 1))
    assert _needs(demo_plan, Settings(), two)["pretrain"] == Needs(gpus=0, cores=1)
    assert m.pool_size(Settings(), two) == 2
    many = Machine(gpus=(), cores=tuple(range(32)))
    assert _needs(demo_plan, Settings(), many)["pretrain"] == Needs(gpus=0, cores=4)
    serial = Settings(local_workers=1)
    assert _needs(demo_plan, serial, many)["pretrain"] == Needs(gpus=0, cores=32)
    assert m.pool_size(serial, many) == 1
    assert _needs(demo_plan, Settings(local_train_cores=64), two)["pretrain"].cores == 2  # capped


def test_the_specs_gpus_win_and_a_machine_without_gpus_trains_on_its_cores(gpu_plan):
    eight = Machine(gpus=tuple(str(i) for i in range(8)), cores=tuple(range(32)))
    needs = _needs(gpu_plan, Settings(), eight)
    assert needs["pretrain"].gpus == 4 and needs["finetune-gete"].gpus == 1
    assert needs["freeze-water"].gpus == 0  # resources.default is the cluster's; locally a step is a core
    m.check_fits(gpu_plan, Settings(), eight)
    cpu = Machine(gpus=(), cores=(0, 1))
    assert {n.gpus for n in _needs(gpu_plan, Settings(), cpu).values()} == {0}
    m.check_fits(gpu_plan, Settings(), cpu)


def test_a_step_asking_more_gpus_than_the_machine_has_is_refused_in_one_line(gpu_plan, demo_plan):
    two = Machine(gpus=("0", "1"), cores=tuple(range(8)))
    with pytest.raises(UsageError) as info:
        m.check_fits(gpu_plan, Settings(), two)
    assert str(info.value) == (
        "resources.pretrain.gpus: step pretrain asks for 4 GPU(s), but this machine has 2 "
        "(CUDA_VISIBLE_DEVICES or LAMFLOW_LOCAL_GPUS); ask for fewer or run on Argo"
    )
    with pytest.raises(UsageError, match="^LAMFLOW_LOCAL_TRAIN_GPUS: step pretrain asks for 3"):
        m.check_fits(demo_plan, Settings(local_train_gpus=3), two)
    with pytest.raises(UsageError, match="^LAMFLOW_LOCAL_STEP_GPUS: step freeze-water asks for 4"):
        m.check_fits(demo_plan, Settings(local_step_gpus=4), two)
