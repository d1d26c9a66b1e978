"""The reports' figures of prior samples: decoder means and draws from p(x|z), each panel from
the lowest seed that has them, made from a checkpoint or read from a record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sigmavae.cli import main
from sigmavae.experiments.figures import prior_sample_figures, sample_panel_images
from sigmavae.experiments.runs import RunSpec, RunStore


def _run(store: RunStore, row: str, seed: int, draws: dict | None, pngs: dict[str, int]):
    """A finished run of ``row`` with ``fid_draws`` = ``draws`` and the sample PNGs named in
    ``pngs`` (file name -> grey level of the image)."""
    spec = RunSpec(row, row.title(), {"data": "frey", "likelihood": row}, seed)
    folder = store.folder(spec)
    folder.mkdir(parents=True)
    (folder / "final.json").write_text(json.dumps({"step": 10}))
    metrics = {} if draws is None else {"fid_draws": draws}
    (folder / "eval.json").write_text(json.dumps({"metrics": metrics}))
    for name, level in pngs.items():
        Image.fromarray(np.full((19, 19), level, np.uint8)).save(folder / name)
    return store.result(spec)


def test_each_decoder_shows_its_lowest_seed_with_samples(tmp_path):
    store = RunStore(tmp_path / "runs", log=lambda m: None)
    measured = {"available": True, "fid": 40.0}
    student = [_run(store, "student_t", 0, None, {"samples-16.png": 10}),  # before fid_draws
               _run(store, "student_t", 1, measured, {"samples-16.png": 20,
                                                      "samples-draws-16.png": 30})]
    per_image = [_run(store, "per_image", 0, {"available": False, "reason": "no draw"},
                      {"samples-16.png": 40})]
    panels = [("Student-t VAE", student), ("per image", per_image)]
    means = sample_panel_images(panels)
    assert [(title, int(image[0, 0, 0])) for title, image in means] == [
        ("Student-t VAE", 10), ("per image", 40)]
    draws = sample_panel_images(panels, draws=True)
    assert [(title, int(image[0, 0, 0])) for title, image in draws] == [
        ("Student-t VAE (seed 1)", 30)]  # seed 0 has no FID of draws, per image no draw
    figs = prior_sample_figures(panels, tmp_path / "m.png", draws=tmp_path / "d.png")
    assert [path.name for _, path in figs] == ["m.png", "d.png"]
    assert "one draw x ~ p(x|z)" in figs[1][0] and (tmp_path / "d.png").stat().st_size > 1000


def test_draws_are_made_from_the_checkpoint_once(tmp_path):
    """A run with a checkpoint and no draws PNG yet gets one from ``sigmavae sample --draws``
    (written into its folder, which its record keeps)."""
    out = tmp_path / "runs" / "fixed_sigma-s0-x"
    assert main(["train", "--data", "frey", "--train-subset", "64", "--val-subset", "16",
                 "--epochs", "1", "--batch-size", "64", "--likelihood", "fixed_sigma",
                 "--likelihood-option", "sigma=0.2", "--out", str(out), "--no-progress"]) == 0
    store = RunStore(tmp_path / "runs", log=lambda m: None)
    spec = RunSpec("fixed_sigma", "Fixed", {"data": "frey", "likelihood": "fixed_sigma"}, 0)
    assert store.folder(spec).name.startswith("fixed_sigma-s0-")
    folder: Path = store.folder(spec)
    out.rename(folder)
    (folder / "eval.json").write_text(json.dumps({"metrics": {"fid_draws": {
        "available": True, "fid": 1.0}}}))
    [(_, draws)] = sample_panel_images([("fixed", [store.result(spec)])], draws=True)
    [(_, means)] = sample_panel_images([("fixed", [store.result(spec)])])
    assert (folder / "samples-draws-16.png").is_file() and (folder / "samples-16.png").is_file()
    assert draws.shape == means.shape and not np.array_equal(draws, means)
