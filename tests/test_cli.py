"""The command line as a user runs it: train, sample, data, likelihoods, and clear errors."""

from __future__ import annotations

import json
import shlex

import pytest
import torch

from sigmavae.cli import main


def test_train_then_sample_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", "frey", "--train-subset", "128", "--val-subset", "32",
               "--epochs", "1", "--batch-size", "64", "--likelihood", "fixed_sigma",
               "--likelihood-option", "beta=0.006", "--out", str(out), "--no-progress"])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["likelihood_options"] == {"beta": 0.006}
    ckpt = out / "checkpoints" / "last.ckpt"
    assert main(["sample", str(ckpt), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["sample", str(ckpt), "--n", "16", "--draws", "--out",
                 str(tmp_path / "d.png")]) == 0
    assert "16 samples (one draw from p(x|z) at each prior draw)" in capsys.readouterr().out
    assert (tmp_path / "d.png").read_bytes() != (tmp_path / "s.png").read_bytes()
    assert main(["eval", str(ckpt), "--limit", "40", "--out", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "nats/image" in printed and "bits/dim" in printed and "[0, 1]" in printed


def test_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: frey\ntrain_subset: 64\nval_subset: 16\nepochs: 5\nbatch_size: 32\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(out),
                 "--no-progress", "--drop-last", "--no-tune-malloc"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 1 and config["drop_last"] is True
    assert config["tune_malloc"] is False and config["compile"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--config", "missing.yaml"], "does not exist"),
        (["train", "--data", "frey", "--train-subset", "10", "--batch-size", "64"],
         "larger than the training set"),
        (["train", "--data", "mnist", "--data-root", "nowhere"], "MNIST"),
        (["eval", "missing.ckpt"], "does not exist"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--out", "r"] if argv[0] == "eval" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_config_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochz: 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown key(s) ['epochz']" in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["likelihoods"]) == 0
    listed = capsys.readouterr().out
    for name in ("optimal_sigma", "categorical", "logistic_mixture", "student_t"):
        assert name in listed
    assert main(["data"]) == 0
    assert "frey" in capsys.readouterr().out
    assert main(["data", "svhn"]) == 0
    assert "train_32x32.mat" in capsys.readouterr().out
    assert main(["likelihoods", "student_t"]) == 0
    assert "  df (a number or None; default None)\n      a fixed number of degrees" in (
        capsys.readouterr().out)
    assert main(["models"]) == 0
    assert "hierarchical" in capsys.readouterr().out
    assert main(["models", "hierarchical"]) == 0
    assert "  stages (an integer; default 3)\n" in capsys.readouterr().out
    assert main(["likelihoods", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sigmavae likelihoods: error: unknown likelihood 'nosuch'; choose "
                          "one of: bernoulli,") and err.count("\n") == 1


def test_train_and_eval_the_hierarchical_model(tmp_path, capsys):
    out = tmp_path / "hvae"
    assert main(["train", "--data", "frey", "--model", "hierarchical", "--model-option",
                 "width=8", "--model-option", "layers=6", "--latent-dim", "2",
                 "--train-subset", "64", "--val-subset", "16", "--epochs", "1",
                 "--batch-size", "32", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_options"] == {"width": 8, "layers": 6} and config["latent_dim"] == 2
    ckpt = out / "checkpoints" / "last.ckpt"
    assert main(["eval", str(ckpt), "--metrics", "elbo,mi", "--limit", "16",
                 "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metrics"]["elbo"]["available"] is True
    assert "not one diagonal Gaussian" in report["metrics"]["mi"]["reason"]


def test_a_float64_run_is_evaluated_in_float64(tmp_path):
    """--precision 64-true: load_trained gives a float64 model and every cheap metric runs on
    it (IWAE, MI and active units crashed on float64 before: float32 latents)."""
    from sigmavae.training import load_trained

    out = tmp_path / "f64"
    assert main(["train", "--data", "frey", "--train-subset", "64", "--val-subset", "16",
                 "--epochs", "1", "--batch-size", "32", "--precision", "64-true",
                 "--out", str(out), "--no-progress"]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    model, _ = load_trained(ckpt)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert main(["eval", str(ckpt), "--metrics", "elbo,discretized,iwae,mi,active_units",
                 "--iwae-samples", "10", "--limit", "16", "--out", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert all(m["available"] for m in metrics.values()), metrics


def test_every_config_key_is_a_flag(capsys, monkeypatch):
    """The train flags are made from TrainConfig's declaration: one per key (a pair for a
    boolean, KEY=VALUE for a mapping), with the key's help; absent flags stay absent."""
    from sigmavae.cli import build_parser
    from sigmavae.run.config import settings

    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps help at the terminal width
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for setting in settings():
        flag = "--" + setting.name.removesuffix("s" if setting.kind is dict else "").replace(
            "_", "-")
        assert f"{flag} " in text, flag
        if setting.kind is bool:
            assert f"--no-{flag[2:]}" in text, flag
        assert " ".join(setting.help.split()) in text, setting.name
    args = vars(parser.parse_args(["train", "--no-progress", "--latent-dim", "null",
                                   "--epochs", "3", "--compile", "--model-option", "width=8"]))
    assert args["progress"] is False and args["latent_dim"] is None and args["epochs"] == 3
    assert args["compile"] is True and args["model_options"] == ["width=8"]
    assert "lr" not in args and "fused_adam" not in args  # not given: the file's value stays


def test_help_lists_come_from_the_registries(capsys, monkeypatch):
    from sigmavae import likelihoods
    from sigmavae.cli import build_parser
    from sigmavae.data import dataset_names
    from sigmavae.metrics import METRICS
    from sigmavae.models import model_names

    monkeypatch.setenv("COLUMNS", "10000")
    parser = build_parser()
    for command in ("train", "eval"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for names in (likelihoods.names(), model_names(), dataset_names(), METRICS.names()):
        assert ", ".join(names) in text, names


def test_a_reader_that_leaves_early_gets_no_error(tmp_path):
    """`sigmavae configs | head -1`: the pipe closes under the writer; no error line on stderr."""
    import subprocess
    import sys

    script = (f"{shlex.quote(sys.executable)} -m sigmavae likelihoods | head -1; "
              f"{shlex.quote(sys.executable)} -m sigmavae configs | head -1")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.stdout.count("\n") == 2
    assert "error" not in done.stderr.lower(), done.stderr


def test_draws_of_a_sigma_fitted_to_each_image_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "frey", "--train-subset", "64", "--val-subset", "16",
                 "--epochs", "1", "--batch-size", "64", "--likelihood",
                 "optimal_sigma_per_image", "--out", str(out), "--no-progress"]) == 0
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "m.png")]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--draws", "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sigmavae sample: error: --draws: the checkpoint's decoder has no "
                          "p(x|z) at a prior sample (") and "Traceback" not in err
    assert not (tmp_path / "d.png").exists()
