"""Command builders of the DeePMD-kit seam (table tests) and run_dp with a fake ``dp``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lamflow.ops import dp

DP = "/opt/venv/bin/dp"


@pytest.fixture(autouse=True)
def fixed_dp(monkeypatch):
    monkeypatch.setenv("LAMFLOW_DP", DP)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["train", "input.json"]),
        (
            {"finetune": "pre/model.ckpt.pt", "model_branch": "water", "use_pretrain_script": True},
            [
                "train",
                "input.json",
                "--finetune",
                "pre/model.ckpt.pt",
                "--model-branch",
                "water",
                "--use-pretrain-script",
            ],
        ),
        (
            {"finetune": "m.pt", "model_branch": "RANDOM"},
            ["train", "input.json", "--finetune", "m.pt", "--model-branch", "RANDOM"],
        ),
        ({"finetune": "m.pt"}, ["train", "input.json", "--finetune", "m.pt"]),
        (
            {"init_frz_model": "m.pth", "use_pretrain_script": True},
            ["train", "input.json", "--init-frz-model", "m.pth", "--use-pretrain-script"],
        ),
        ({"restart": "model.ckpt-50.pt"}, ["train", "input.json", "--restart", "model.ckpt-50.pt"]),
        ({"skip_neighbor_stat": True}, ["train", "input.json", "--skip-neighbor-stat"]),
    ],
)
def test_train_command(kwargs, expected):
    assert dp.train_command("input.json", **kwargs) == [DP, "--pt", *expected]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"finetune": "a.pt", "restart": "b.pt"}, "mutually exclusive"),
        ({"model_branch": "water"}, "only applies when fine-tuning"),
        ({"use_pretrain_script": True}, "needs finetune or init_frz_model"),
        ({"finetune": "frozen.pth"}, "needs a .pt checkpoint"),
    ],
)
def test_train_command_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dp.train_command("input.json", **kwargs)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: dp.freeze_command("model.pth"), ["freeze", "-c", ".", "-o", "model.pth"]),
        (
            lambda: dp.freeze_command("w.pth", head="water"),
            ["freeze", "-c", ".", "-o", "w.pth", "--head", "water"],
        ),
        (lambda: dp.test_command("m.pth", "data"), ["test", "-m", "m.pth", "-s", "data", "-n", "0"]),
        (
            lambda: dp.test_command("m.pt", "data", numb_test=5, head="a", detail_prefix="d/detail"),
            ["test", "-m", "m.pt", "-s", "data", "-n", "5", "-d", "d/detail", "--head", "a"],
        ),
        (
            lambda: dp.change_bias_command("m.pth", "data", output="o.pth"),
            ["change-bias", "m.pth", "-s", "data", "-m", "change", "-n", "0", "-o", "o.pth"],
        ),
        (
            lambda: dp.change_bias_command(
                "m.pt", "d", output="o.pt", mode="set", numb_batch=3, model_branch="w"
            ),
            ["change-bias", "m.pt", "-s", "d", "-m", "set", "-n", "3", "-o", "o.pt", "--model-branch", "w"],
        ),
    ],
)
def test_other_commands(call, expected):
    assert call() == [DP, "--pt", *expected]


def test_command_rejects_bad_values():
    with pytest.raises(ValueError, match="numb_test"):
        dp.test_command("m.pth", "d", numb_test=-1)
    with pytest.raises(ValueError, match="mode"):
        dp.change_bias_command("m.pth", "d", output="o", mode="shift")


def test_every_builder_passes_the_pytorch_backend():
    # dp defaults to TensorFlow; each builder must select --pt right after the program.
    for argv in (
        dp.train_command("i.json"),
        dp.freeze_command("m.pth"),
        dp.test_command("m", "s"),
        dp.change_bias_command("m", "s", output="o"),
    ):
        assert argv[1] == "--pt"


def test_dp_program_prefers_override_then_interpreter_dir(monkeypatch):
    assert dp.dp_program() == [DP]
    monkeypatch.setenv("LAMFLOW_DP", "/usr/bin/python3 '/my dir/fake_dp.py'")
    assert dp.dp_program() == ["/usr/bin/python3", "/my dir/fake_dp.py"]
    assert dp.train_command("i.json")[:4] == ["/usr/bin/python3", "/my dir/fake_dp.py", "--pt", "train"]
    monkeypatch.delenv("LAMFLOW_DP")
    beside = Path(sys.executable).with_name("dp")
    assert beside.exists(), "the test environment installs DeePMD-kit beside the interpreter"
    assert dp.dp_program() == [str(beside)]


def _fake_dp(tmp_path: Path, exit_code: int) -> list[str]:
    script = tmp_path / "fake_dp.py"
    script.write_text(
        "import sys\n"
        "print('args:', ' '.join(sys.argv[1:]))\n"
        f"print('something went wrong' if {exit_code} else 'done', file=sys.stderr)\n"
        f"sys.exit({exit_code})\n"
    )
    return [sys.executable, str(script)]


def test_run_dp_logs_output(tmp_path, capsys):
    run = dp.run_dp([*_fake_dp(tmp_path, 0), "--pt", "test"], cwd=tmp_path, log_file="x.log")
    log = (tmp_path / "x.log").read_text()
    assert run.returncode == 0
    assert "args: --pt test" in log and "done" in log
    assert "done" in capsys.readouterr().out


def test_run_dp_keeps_the_order_of_stdout_and_stderr(tmp_path, monkeypatch):
    """A piped Python child is block-buffered unless told otherwise: run_dp must make it unbuffered, so
    stdout lines are not logged after later stderr lines (and a DpError's last line is the real one)."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    script = tmp_path / "chatty.py"
    script.write_text(
        "import sys\nfor i in range(3):\n    print(f'out {i}')\n    print(f'err {i}', file=sys.stderr)\n"
    )
    dp.run_dp([sys.executable, str(script)], cwd=tmp_path, log_file="o.log", echo=False)
    lines = (tmp_path / "o.log").read_text().splitlines()[1:]
    assert lines == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"]


def test_run_dp_raises_with_tail(tmp_path):
    with pytest.raises(dp.DpError) as info:
        dp.run_dp([*_fake_dp(tmp_path, 3), "--pt", "train"], cwd=tmp_path, log_file="logs/t.log", echo=False)
    assert info.value.returncode == 3
    assert "something went wrong" in str(info.value)
    assert info.value.log_file == tmp_path / "logs" / "t.log"


def test_training_on_several_gpus_runs_under_torchrun(monkeypatch):
    """The Argo renderer sets LAMFLOW_NPROC_PER_NODE on pods with N > 1 GPUs; only `dp train` is launched
    with torchrun (DeePMD-kit's documented multi-GPU launch); freeze/test are single-process."""
    monkeypatch.setenv("LAMFLOW_DP", "dp")
    monkeypatch.setenv(dp.NPROC_ENV, "4")
    argv = dp.train_command("input.json")
    assert Path(argv[0]).name == "torchrun" and Path(argv[0]).parent == Path(sys.executable).parent
    assert argv[1:] == ["--nproc_per_node=4", "--no-python", "dp", "--pt", "train", "input.json"]
    assert dp.freeze_command("m.pth")[:3] == ["dp", "--pt", "freeze"]
    monkeypatch.setenv(dp.NPROC_ENV, "1")
    assert dp.train_command("input.json")[0] == "dp"
    monkeypatch.setenv(dp.NPROC_ENV, "four")
    with pytest.raises(ValueError, match="LAMFLOW_NPROC_PER_NODE='four': expected a positive whole number"):
        dp.train_command("input.json")


def test_the_pods_of_a_pytorchjob_and_local_nodes_build_one_torchrun_command(monkeypatch):
    """In a pod the training operator's PET_* variables (elasticPolicy, c10d) give the topology; on the
    local engine lamflow's own; both go through the one builder."""
    monkeypatch.setenv("LAMFLOW_DP", "dp")
    pod = {
        "PET_NNODES": "4:4", "PET_NPROC_PER_NODE": "8", "PET_RDZV_ENDPOINT": "job-master-0:23456",
        "PET_RDZV_ID": "pretrain", "LAMFLOW_NNODES": "2",  # the operator's wins in a pod
    }  # fmt: skip
    topo = dp.process_topology(pod)
    assert topo == dp.Topology(
        nnodes=4, nproc_per_node=8, rdzv_endpoint="job-master-0:23456", rdzv_id="pretrain"
    )
    assert topo.world_size == 32
    argv = dp.train_command("input.json", topology=topo)
    assert argv[1:] == [
        "--nproc_per_node=8", "--nnodes=4", "--rdzv_backend=c10d", "--rdzv_endpoint=job-master-0:23456",
        "--rdzv_id=pretrain", "--no-python", "dp", "--pt", "train", "input.json",
    ]  # fmt: skip
    local = dp.process_topology({"LAMFLOW_NNODES": "2", "LAMFLOW_RDZV_ENDPOINT": "127.0.0.1:5000"})
    assert (local.nnodes, local.nproc_per_node, local.rdzv_endpoint) == (2, 1, "127.0.0.1:5000")
    with pytest.raises(ValueError, match="2 nodes, no rendezvous endpoint"):
        dp.launcher(dp.Topology(nnodes=2))
    static = {"PET_NNODES": "2", "PET_MASTER_ADDR": "job-master-0", "PET_MASTER_PORT": "23456"}
    assert dp.process_topology(static).rdzv_endpoint == "job-master-0:23456"  # no elasticPolicy
    with pytest.raises(ValueError, match="PET_NNODES='4:x': expected a positive whole number or min:max"):
        dp.process_topology({"PET_NNODES": "4:x"})


def test_data_parallel_training_without_a_gpu_goes_through_the_cpu_shim(monkeypatch):
    """DeePMD-kit 3.2 sets DDP up for CUDA only: more than one process on a machine without GPUs runs its
    entry point through lamflow.ops.training.cpu_ddp; one process, a GPU or a LAMFLOW_DP program do not."""
    monkeypatch.delenv("LAMFLOW_DP", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    two = dp.Topology(nproc_per_node=2)
    assert dp.train_command("in.json", topology=two)[3:7] == [sys.executable, "-m", dp.CPU_DDP_MODULE, "--pt"]
    assert dp.train_command("in.json", topology=dp.Topology())[1:3] == ["--pt", "train"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert dp.CPU_DDP_MODULE not in dp.train_command("in.json", topology=two)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("LAMFLOW_DP", "python fake_dp.py")
    assert dp.CPU_DDP_MODULE not in dp.train_command("in.json", topology=two)


def test_a_dp_process_dies_with_the_step_that_started_it(tmp_path):
    """A step killed by a signal it cannot pass on (its launcher stopping) leaves no `dp` running."""
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "dp.pid"
    long_dp = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    call = f"run_dp({long_dp!r}, cwd={str(tmp_path)!r}, log_file='log.txt')"
    step = subprocess.Popen([sys.executable, "-c", f"from lamflow.ops.dp import run_dp; {call}"])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and step.poll() is None
        time.sleep(0.05)
    dp_pid = int(pid_file.read_text())
    step.send_signal(signal.SIGKILL)
    step.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{dp_pid}").exists() and "Z" not in _state(dp_pid):
        assert time.monotonic() < deadline, "dp outlived its step"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"
