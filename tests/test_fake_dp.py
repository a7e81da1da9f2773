"""The fake ``dp``'s memory of what DeePMD-kit's argument checker made of an input: inputs that differ
only in their absolute paths share one remembered result, and each gets its own paths back."""

from __future__ import annotations

import json

import pytest

from tests import fake_dp


def training_input(root: str) -> dict:
    return {
        "model": {
            "type_map": ["H", "O"],
            "descriptor": {"type": "se_e2_a", "sel": [4, 4], "rcut": 4.0},
            "fitting_net": {"neuron": [8]},
        },
        "learning_rate": {"start_lr": 1e-3},
        "loss": {},
        "training": {"training_data": {"systems": [f"{root}/a", f"{root}/b"]}, "numb_steps": 2},
    }


def test_inputs_that_differ_only_in_paths_share_one_argcheck(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMFLOW_FAKE_DP_CACHE", str(tmp_path / "cache"))
    first = fake_dp.normalized_input(training_input("/run/one"), multi_task=False)
    assert first["training"]["training_data"]["systems"] == ["/run/one/a", "/run/one/b"]
    assert first["training"]["disp_freq"] == 1000  # a default the checker filled in
    (remembered,) = (tmp_path / "cache").iterdir()
    assert "/run/one" not in remembered.read_text()
    second = fake_dp.normalized_input(training_input("/elsewhere/two"), multi_task=False)
    assert second["training"]["training_data"]["systems"] == ["/elsewhere/two/a", "/elsewhere/two/b"]
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert json.dumps(second).replace("/elsewhere/two", "/run/one") == json.dumps(first)


def test_a_bad_input_fails_with_the_checkers_words_and_no_mark(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAMFLOW_FAKE_DP_CACHE", str(tmp_path / "cache"))
    config = training_input("/run/one")
    config["training"]["numb_steps"] = "/not/a/number"
    with pytest.raises(SystemExit):
        fake_dp.normalized_input(config, multi_task=False)
    err = capsys.readouterr().err
    assert "DEEPMD ERROR" in err and "numb_steps" in err and fake_dp.PATH_MARK not in err
    paths = [f"/p{i}" for i in range(11)]
    marked = f"{fake_dp.PATH_MARK}1 and {fake_dp.PATH_MARK}10"
    assert fake_dp._unmarked(marked, paths) == "/p1 and /p10"  # a message naming a path names it whole


def test_command_lines_that_differ_only_in_paths_share_one_parse(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMFLOW_FAKE_DP_CACHE", str(tmp_path / "cache"))
    first = fake_dp.parsed_args(["--pt", "train", "input.json", "--finetune", "/run/one/model.ckpt.pt"])
    assert (first.command, first.INPUT, first.finetune, first.backend) == (
        "train",
        "input.json",
        "/run/one/model.ckpt.pt",
        "pytorch",
    )
    second = fake_dp.parsed_args(["--pt", "train", "input.json", "--finetune", "/elsewhere/a.pt"])
    assert second.finetune == "/elsewhere/a.pt" and vars(second) == vars(first) | {
        "finetune": "/elsewhere/a.pt"
    }
    assert len(list((tmp_path / "cache").iterdir())) == 1
    with pytest.raises(SystemExit) as exited:
        fake_dp.parsed_args(["--pt", "train", "input.json", "--no-such-flag"])
    assert exited.value.code == 2
