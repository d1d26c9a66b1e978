"""Every bad input on the command line: exit status 2, one line naming the value and what is
expected, no traceback, and nothing changed on disk (apart from files the case itself made)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sigmavae.cli import main

TINY = ["--data", "frey", "--train-subset", "64", "--val-subset", "16", "--batch-size", "64",
        "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of a tiny run (made once for the module)."""
    out = tmp_path_factory.mktemp("cli-errors") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out / "checkpoints" / "last.ckpt"


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return make


def _both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        for maker in makers:
            maker(folder)
    return make


def _pngs(subfolder: str, n: int) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        from PIL import Image

        (folder / subfolder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("L", (8, 8), color=i).save(folder / subfolder / f"{i:03d}.png")
    return make


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# (argv, expected message fragment, files the case makes first); CKPT is the fixture's path.
TRAIN_CASES = [
    (["--likelihood", "nosuch"], "unknown likelihood 'nosuch'; choose one of: bernoulli", None),
    (["--model", "nosuch"], "unknown model 'nosuch'; choose one of: conv, hierarchical, svg",
     None),
    (["--data", "nosuch"], "data must be one of ['bair', 'celeba', 'cifar10', 'folder', 'frey'",
     None),
    (["--likelihood", "fixed_sigma", "--likelihood-option", "beta=-1"],
     "likelihood 'fixed_sigma': beta must be > 0, got -1", None),
    (["--likelihood-option", "nosuchopt=1"],
     "likelihood 'optimal_sigma': unknown option nosuchopt; its options are: decay", None),
    (["--likelihood-option", "decay=abc"],
     "likelihood 'optimal_sigma': option decay must be a number, got 'abc' (str)",
     None),
    (["--likelihood-option", "decay=1.5"], "decay must be in [0, 1), got 1.5", None),
    (["--likelihood-option", "min_log_sigma=paper"],
     "option min_log_sigma must be a number or 'public_code' or None, got 'paper' (str)",
     None),
    (["--likelihood", "logistic_mixture", "--likelihood-option", "components=2.5"],
     "option components must be an integer, got 2.5 (float)", None),
    (["--likelihood", "discretized_gaussian", "--likelihood-option", "scale=big"],
     "option scale must be 'learned' or 'optimal' or a number, got 'big' (str)", None),
    (["--likelihood", "student_t", "--likelihood-option", "df=-1"], "df must be a positive",
     None),
    (["--likelihood-option", "novalue"], "--likelihood-option: expected KEY=VALUE, got", None),
    (["--likelihood-option", "decay=[0.9"], "the value is not a YAML scalar", None),
    (["--model-option", "width=8"], "model 'conv': unknown option width; its options are: "
     "latent_dim, channels", None),
    (["--model", "hierarchical", "--model-option", "width=-3"],
     "model 'hierarchical': hierarchical VAE: latent_dim and width must be >= 1", None),
    (["--model", "hierarchical", "--model-option", "layers=many"],
     "option layers must be an integer, got 'many' (str)", None),
    (["--epochs", "0"], "epochs must be >= 1, got 0", None),
    (["--batch-size", "0"], "batch_size must be >= 1, got 0", None),
    (["--batch-size", "5000"], "is larger than the training set", None),
    (["--lr", "-1"], "lr must be > 0, got -1", None),
    (["--beta", "-0.5"], "beta must be >= 0 or null, got -0.5", None),
    (["--seed", "-1"], "seed must be in 0..2^32-1, got -1", None),
    (["--devices", "0"], "devices must be >= 1, got 0", None),
    (["--latent-dim", "0"], "latent_dim must be >= 1 or null, got 0", None),
    (["--train-subset", "0"], "train_subset must be >= 1 or null, got 0", None),
    (["--grad-clip", "0"], "grad_clip must be > 0 or null, got 0.0", None),
    (["--checkpoint-every-n-steps", "0"], "checkpoint_every_n_steps must be >= 1", None),
    (["--max-nonfinite-steps", "0"], "max_nonfinite_steps must be >= 1, got 0", None),
    (["--precision", "8"], "precision must be one of ['32-true', 'bf16-mixed'", None),
    (["--accelerator", "tpu"], "accelerator must be one of ['auto', 'cpu', 'cuda'", None),
    (["--out", "afile"], "out afile exists and is not a folder", _write("afile", "x")),
    (["--resume", "nosuch.ckpt"], "--resume nosuch.ckpt: no such checkpoint file", None),
    (["--resume", "junk.ckpt"], "junk.ckpt", _write("junk.ckpt", b"\x00not a checkpoint")),
    (["--config", "nosuch.yaml"], "config file nosuch.yaml does not exist", None),
    (["--config", "c.yaml"], "config file c.yaml is not valid YAML (line 2, column 1)",
     _write("c.yaml", "epochs: [1\n")),
    (["--config", "c.yaml"], "c.yaml: epochs must be an integer, got 'abc'",
     _write("c.yaml", "epochs: abc\n")),
    (["--config", "c.yaml"], "c.yaml: expected a mapping of keys to values, got list",
     _write("c.yaml", "- 1\n")),
    (["--config", "c.yaml"], "c.yaml: unknown key(s) ['epochz']", _write("c.yaml", "epochz: 3\n")),
    (["--config", "c.yaml"], "c.yaml: likelihood_options must be a mapping",
     _write("c.yaml", "likelihood_options: 3\n")),
    (["--config", "c.yaml"], "c.yaml cannot be read as text",
     _write("c.yaml", b"\xff\xfe\x00bad")),
    (["--data", "mnist", "--data-root", "nowhere"], "mnist: missing file(s)", None),
    (["--data", "mnist", "--data-root", "m"], "train-images-idx3-ubyte.gz is empty (0 bytes)",
     _both(_write("m/MNIST/raw/train-images-idx3-ubyte.gz", b""),
           _write("m/MNIST/raw/train-labels-idx1-ubyte.gz",  # a valid IDX labels file
                  gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))))),
    (["--data-option", "image_size=abc"], "image_size must be a positive integer", None),
    (["--data-option", "colour=1"], "unknown option(s) colour for data set 'frey'", None),
    (["--data-option", "val_fraction=2"], "val_fraction must be in [0, 1), got 2.0", None),
    (["--data-root", "f.mat"], "frey: f.mat is empty (0 bytes)", _write("f.mat", b"")),
    (["--data-root", "f.mat"], "frey: cannot read f.mat as a MATLAB v5 .mat file",
     _write("f.mat", bytes(range(256)) * 16)),
    (["--data", "npz", "--data-root", "x.npz"], "npz: x.npz is not a .npz archive",
     _write("x.npz", bytes(range(256)) * 4)),
    (["--data", "npz", "--data-root", "x.npz"], "npz: x.npz is empty (0 bytes)",
     _write("x.npz", b"")),
    (["--data", "folder", "--data-root", "imgs", "--data-option", "cache=false"],
     "cannot decode image file imgs/bad.png", _both(_pngs("imgs", 40),
                                                    _write("imgs/bad.png", b"\x89PNG not really"))),
    (["--data", "folder", "--data-root", "imgs"], "folder: no image files",
     _write("imgs/a.txt", "x")),
    (["--data", "folder", "--data-root", "imgs", "--data-option", "crop=abc"],
     "folder: option crop must be True or False, got 'abc' (str)", _write("imgs/a.txt", "x")),
]

SAMPLE_CASES = [
    (["sample", "CKPT", "--n", "0"], "--n must be >= 1 (images in the grid), got 0", None),
    (["sample", "CKPT", "--n", "-3"], "--n must be >= 1 (images in the grid), got -3", None),
    (["sample", "CKPT", "--seed", "-2"], "--seed must be >= 0, got -2", None),
    (["sample", "CKPT", "--out", "s.txt"], "--out s.txt: expected a file ending in .png", None),
    (["sample", "CKPT", "--out", "adir"], "--out adir: is a folder",
     _write("adir/keep", "x")),
    (["sample", "nosuch.ckpt"], "checkpoint nosuch.ckpt does not exist", None),
]

EVAL_CASES = [
    (["eval", "CKPT", "--metrics", "nosuch"], "--metrics: unknown metric 'nosuch'; choose from",
     None),
    (["eval", "CKPT", "--metrics", ","], "--metrics: no metrics given", None),
    (["eval", "CKPT", "--elbo-samples", "0"], "--elbo-samples must be >= 1, got 0", None),
    (["eval", "CKPT", "--iwae-samples", "0"], "--iwae-samples must be >= 1, got 0", None),
    (["eval", "CKPT", "--mi-data", "1"], "--mi-data must be >= 2, got 1", None),
    (["eval", "CKPT", "--fid-samples", "1"], "--fid-samples must be >= 2, got 1", None),
    (["eval", "CKPT", "--samples", "0"], "--elbo-samples must be >= 1, got 0", None),
    (["eval", "CKPT", "--video-context-frames", "0"], "--video-context-frames must be >= 1",
     None),
    (["eval", "CKPT", "--fvd-samples", "1"], "--fvd-samples must be >= 2, got 1", None),
    (["eval", "CKPT", "--active-threshold", "-1"], "--active-threshold must be >= 0, got -1.0",
     None),
    (["eval", "CKPT", "--calibration-levels", "0.5,1"],
     "--calibration-levels must be a list of numbers, each > 0 and < 1 (or None), got (0.5, 1.0)",
     None),
    (["eval", "CKPT", "--batch-size", "0"], "--batch-size must be >= 1, got 0", None),
    (["eval", "CKPT", "--limit", "0"], "--limit must be >= 1, got 0", None),
    (["eval", "CKPT", "--seed", "-1"], "--seed must be >= 0, got -1", None),
    (["eval", "CKPT", "--device", "tpu"], "--device: expected cpu, cuda, cuda:N or auto, got",
     None),
    (["eval", "CKPT", "--out", "adir"], "--out adir: is a folder", _write("adir/keep", "x")),
    (["eval", "CKPT", "--split", "nosuch"], "unknown split 'nosuch' for frey", None),
    (["eval", "CKPT", "--data-root", "nowhere"], "frey: no file nowhere", None),
    (["eval", "CKPT", "--metrics", "fid", "--fid-features", "nosuchmod:fn", "--limit", "20",
      "--fid-samples", "20"], "--fid-features 'nosuchmod:fn': cannot import module 'nosuchmod'",
     None),
    (["eval", "nosuch.ckpt"], "checkpoint nosuch.ckpt does not exist", None),
    (["eval", "empty.ckpt"], "checkpoint empty.ckpt is empty (0 bytes)",
     _write("empty.ckpt", b"")),
    (["eval", "text.ckpt"], "checkpoint text.ckpt is a text file (it starts 'not a checkpoint')",
     _write("text.ckpt", "not a checkpoint\n")),
    (["eval", "r.ckpt"], "checkpoint r.ckpt is not a PyTorch checkpoint file",
     _write("r.ckpt", bytes(range(7, 256)) * 8)),
    (["eval", "adir"], "adir is a folder with neither model.safetensors (an exported model) "
     "nor checkpoints/last.ckpt (a run)",
     _write("adir/keep", "x")),
    (["sample", "empty.ckpt"], "checkpoint empty.ckpt is empty (0 bytes)",
     _write("empty.ckpt", b"")),
]


def _run_case(argv, message, make, tmp_path, monkeypatch, capsys, checkpoint):
    monkeypatch.chdir(tmp_path)
    if make is not None:
        make(tmp_path)
    argv = [str(checkpoint) if a == "CKPT" else a for a in argv]
    before = _snapshot(tmp_path)
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith(f"sigmavae {argv[0]}: error: "), last
    assert message in last, (message, last)
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(tmp_path) == before, "the failed command changed files"


@pytest.mark.parametrize(("argv", "message", "make"), TRAIN_CASES,
                         ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_errors(argv, message, make, tmp_path, monkeypatch, capsys):
    base = [a for a in TINY if a not in ("--data", "frey")] if "--data" in argv else TINY
    if "--config" in argv:
        base = ["--no-progress"]
    _run_case(["train", *base, "--out", "run", *argv], message, make, tmp_path, monkeypatch,
              capsys, None)


@pytest.mark.parametrize(("argv", "message", "make"), SAMPLE_CASES + EVAL_CASES,
                         ids=[" ".join(c[0]) for c in SAMPLE_CASES + EVAL_CASES])
def test_sample_and_eval_errors(argv, message, make, tmp_path, monkeypatch, capsys, checkpoint):
    _run_case(argv, message, make, tmp_path, monkeypatch, capsys, checkpoint)


def test_the_installed_command_prints_one_line_and_exits_2(tmp_path):
    """Through the console entry point, as a user runs it (no traceback reaches the shell)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "sigmavae.cli", "train", "--likelihood",
                           "nosuch", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sigmavae train: error: config: unknown likelihood 'nosuch'; choose one of: "
        "bernoulli, bitwise_categorical, categorical, discretized_gaussian, "
        "discretized_logistic, fixed_sigma, gaussian, learned_sigma, logistic_mixture, "
        "optimal_sigma, optimal_sigma_per_dim, optimal_sigma_per_image, per_pixel_sigma, "
        "student_t"]
    assert not (tmp_path / "run").exists()


def _torch_file(name: str, obj: object) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        import torch

        torch.save(obj, folder / name)
    return make


@pytest.mark.parametrize(("obj", "message"), [
    ("tensor", "t.ckpt is not a sigmavae checkpoint: the PyTorch file holds a Tensor"),
    ({"step": 3}, "t.ckpt is not a sigmavae checkpoint: no 'model' entry (its keys: step)"),
])
def test_torch_files_that_are_not_checkpoints(obj, message, tmp_path, monkeypatch, capsys):
    import torch

    obj = torch.zeros(3) if obj == "tensor" else obj
    _run_case(["eval", "t.ckpt"], message, _torch_file("t.ckpt", obj), tmp_path, monkeypatch,
              capsys, None)


def test_checkpoint_with_executable_pickle_is_refused(tmp_path, monkeypatch, capsys):
    import pickle
    import zipfile

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo exploited > pwned",))

    def make(folder: Path) -> None:
        with zipfile.ZipFile(folder / "evil.ckpt", "w") as z:  # torch's zip layout
            z.writestr("evil/data.pkl", pickle.dumps({"model": Exploit()}, protocol=2))
            z.writestr("evil/version", "3\n")
    _run_case(["eval", "evil.ckpt"], "evil.ckpt", make, tmp_path, monkeypatch, capsys, None)
    assert not (tmp_path / "pwned").exists()


def test_resume_with_another_model_is_refused(checkpoint, tmp_path, monkeypatch, capsys):
    """Resuming a checkpoint with another model size: refused before anything is built (the
    latent size is fixed for a run), one line naming the key, nothing written."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", *TINY, "--latent-dim", "5", "--out", "run", "--resume", str(checkpoint)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sigmavae train: error: cannot resume run with latent_dim 5 (the run's: "
                          "null): fixed for a run")
    assert not (tmp_path / "run").exists()


def test_disk_full_while_writing_the_checkpoint(small_disk_factory, capsys):
    """A real file system that fills up mid-run: the first epoch's checkpoint fits, the second's
    temporary file does not. One line; the last good checkpoint loads; no temporary file."""
    from sigmavae.training import load_checkpoint

    disk = small_disk_factory("16m")  # the conv VAE's checkpoint (+ Adam state) is ~11 MB
    out = disk / "run"
    argv = ["train", *TINY, "--epochs", "3", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    last = out / "checkpoints" / "last.ckpt"
    assert err.startswith(f"sigmavae train: error: no space left on device while writing the "
                          f"checkpoint {last} "), err
    assert f"the last good checkpoint {last} is intact" in err
    assert load_checkpoint(last)["loop"]["epoch"] == 1
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]



@pytest.mark.parametrize(("argv", "line"), [
    (["--likelihood", "nosuch"], "config: unknown likelihood 'nosuch'; choose one of: bernoulli, "
     "bitwise_categorical, categorical, discretized_gaussian, discretized_logistic, fixed_sigma, "
     "gaussian, learned_sigma, logistic_mixture, optimal_sigma, optimal_sigma_per_dim, "
     "optimal_sigma_per_image, per_pixel_sigma, student_t"),
    (["--model", "nosuch"],
     "config: unknown model 'nosuch'; choose one of: conv, hierarchical, svg"),
    (["--likelihood-option", "nosuchopt=1"], "config: likelihood 'optimal_sigma': unknown option "
     "nosuchopt; its options are: decay, train_sigma"),
], ids=["likelihood", "model", "likelihood-option"])
def test_wrong_names_fail_before_any_data_is_read(argv, line, tmp_path, monkeypatch, capsys):
    """The issue's fail-fast cases: one line naming the bad value and the valid ones, exit 2,
    no traceback, and no data read (frey's loader is swapped for one that fails the test if
    called) nor file written."""
    from sigmavae.data import DATASETS, get_spec, register_dataset

    frey = get_spec("frey")

    def never(split, root, *, image_size, download, val_fraction, seed):
        raise AssertionError("data was read before the names were checked")

    monkeypatch.chdir(tmp_path)
    DATASETS.unregister("frey")
    try:
        register_dataset("frey", frey.description)(never)
        code = main(["train", *TINY, "--out", "run", *argv])
        captured = capsys.readouterr()
        files = list(tmp_path.iterdir())
        with pytest.raises(AssertionError, match="data was read"):  # the control: it would
            main(["train", *TINY, "--out", "control"])
    finally:
        DATASETS.unregister("frey")
        DATASETS.register("frey", frey.description)(frey)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sigmavae train: error: {line}"), lines
    assert "Traceback" not in captured.out
    assert files == []
