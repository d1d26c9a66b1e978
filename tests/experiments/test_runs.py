"""Run identity and records: ids that do not depend on the machine, records without its paths."""

from __future__ import annotations

from sigmavae.experiments.presets import cache_dir
from sigmavae.experiments.runs import RunSpec, portable, without_machine_paths


def test_a_run_in_the_cache_has_the_same_id_on_every_machine(tmp_path, monkeypatch):
    train = {"data": "folder", "data_options": {"labels": True}, "likelihood": "optimal_sigma"}
    ids = []
    for home in ("alice", "bob"):
        monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / home / ".cache" / "sigmavae"))
        root = cache_dir() / "cifar10-jpeg"
        spec = RunSpec("optimal_sigma", "optimal", {**train, "data_root": str(root)}, 0)
        assert portable(spec.train)["data_root"] == "<cache>/cifar10-jpeg"
        ids.append(spec.run_id)
    assert ids[0] == ids[1]
    # a user's own folder is part of what the run is
    a = RunSpec("r", "r", {**train, "data_root": str(tmp_path / "mine")}, 0)
    b = RunSpec("r", "r", {**train, "data_root": str(tmp_path / "theirs")}, 0)
    assert a.run_id != b.run_id


def test_records_keep_file_names_not_machine_paths(tmp_path):
    record = {"checkpoint": str(tmp_path / "runs" / "x" / "checkpoints" / "last.ckpt"),
              "options": {"fid_features": f"classifier:{tmp_path / 'cache' / 'c.safetensors'}"},
              "note": f"see {tmp_path / 'a' / 'b.png'} and runs/relative/kept.png",
              "steps": [1, 2]}
    clean = without_machine_paths(record)
    assert clean == {"checkpoint": "last.ckpt",
                     "options": {"fid_features": "classifier:c.safetensors"},
                     "note": "see b.png and runs/relative/kept.png", "steps": [1, 2]}
