"""Metrics own their options: one declaration in ``register_metric`` is the keyword of
``evaluate_checkpoint`` (checked, defaulted), the flag of ``sigmavae eval``, what ``eval_flags``
renders and what the report lists."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.cli import build_parser, main
from sigmavae.metrics import (
    METRICS,
    EvalContext,
    EvalOptionError,
    MetricOption,
    eval_flags,
    evaluate,
    evaluate_checkpoint,
    metric_options,
    register_metric,
)
from sigmavae.metrics.registry import RESERVED_NAMES, check_metric_options
from sigmavae.models import build_model

#: The metric options and their defaults before they were declared by the metrics (the
#: keywords of evaluate_checkpoint then); the reports keep listing them in this order.
BUILTIN_DEFAULTS = {
    "elbo_samples": 10, "iwae_samples": 1000, "mi_data": None, "mi_samples": None,
    "fid_samples": 10000, "fid_features": None, "video_samples": 100,
    "video_context_frames": None, "video_future_frames": None, "fvd_features": None,
    "fvd_samples": None,
}


def _parsed_options(argv: list[str]) -> dict:
    """The metric options ``sigmavae eval`` passes on for ``argv`` (what ``cli._eval`` does)."""
    args = build_parser().parse_args(["eval", "CKPT", *argv])
    return {name: getattr(args, name) for name in metric_options() if name in args}


def test_the_builtin_options_keep_their_names_defaults_and_order():
    options = metric_options()
    assert list(options)[:len(BUILTIN_DEFAULTS)] == list(BUILTIN_DEFAULTS)
    assert {n: options[n].default for n in BUILTIN_DEFAULTS} == BUILTIN_DEFAULTS
    # read by calibration and active_units through ctx.options: declared too (None: the
    # metric's own default, so that reports without them stay as they were)
    assert options["calibration_levels"].default is None
    assert options["active_threshold"].default is None
    assert check_metric_options({}) == {n: o.default for n, o in options.items()}


def test_every_existing_command_line_still_parses_the_same():
    argv = ["--elbo-samples", "2", "--iwae-samples", "8", "--mi-data", "5", "--mi-samples",
            "100", "--fid-samples", "16", "--fid-features", "pixels", "--video-samples", "3",
            "--video-context-frames", "2", "--video-future-frames", "4", "--fvd-features",
            "i3d:x.pt", "--fvd-samples", "7"]
    assert _parsed_options(argv) == {
        "elbo_samples": 2, "iwae_samples": 8, "mi_data": 5, "mi_samples": 100,
        "fid_samples": 16, "fid_features": "pixels", "video_samples": 3,
        "video_context_frames": 2, "video_future_frames": 4, "fvd_features": "i3d:x.pt",
        "fvd_samples": 7}
    assert _parsed_options(["--samples", "3"]) == {"elbo_samples": 3}  # the old alias
    assert _parsed_options([]) == {}  # not given: evaluate_checkpoint's declared defaults
    assert _parsed_options(["--calibration-levels", "0.5,0.99", "--active-threshold", "0"]) == {
        "calibration_levels": (0.5, 0.99), "active_threshold": 0.0}


def test_eval_flags_parse_back_to_the_same_options():
    options = {"elbo_samples": 1, "mi_data": 2000, "fid_samples": 2000,
               "fid_features": "classifier:cifar32-e88e647b6d.safetensors", "mi_samples": None,
               "calibration_levels": [0.25, 0.5], "active_threshold": 0.05}
    flags = eval_flags(options)
    assert flags[:2] == ["--elbo-samples", "1"] and "--mi-samples" not in flags  # None: left out
    assert _parsed_options(flags) == check_metric_options(
        {k: v for k, v in options.items() if v is not None}, defaults=False)
    assert eval_flags({}) == []
    with pytest.raises(EvalOptionError, match="elbo_sample: not an option of any metric; the "
                                              "metric options are: elbo_samples, iwae_samples"):
        eval_flags({"elbo_sample": 1})
    with pytest.raises(EvalOptionError, match="iwae_samples must be >= 1, got 0"):
        eval_flags({"iwae_samples": 0})


@pytest.mark.parametrize(("options", "option", "detail"), [
    ({"elbo_samples": "3"}, "elbo_samples", " must be an integer, got '3'"),
    ({"elbo_samples": True}, "elbo_samples", " must be an integer, got True"),
    ({"iwae_samples": 2.0}, "iwae_samples", " must be an integer, got 2.0"),
    ({"mi_data": 1}, "mi_data", " must be >= 2, got 1"),
    ({"mi_samples": "many"}, "mi_samples", " must be an integer or None, got 'many'"),
    ({"fid_features": 3}, "fid_features", " must be a string or None, got 3"),
    ({"calibration_levels": (0.5, 1.0)}, "calibration_levels",
     " must be a list of numbers, each > 0 and < 1 (or None), got (0.5, 1.0)"),
    ({"active_threshold": -0.1}, "active_threshold", " must be >= 0, got -0.1"),
    ({"iwae_sample": 3}, "iwae_sample", ": not an option of any metric"),
])
def test_values_are_checked_strictly_against_the_declarations(options, option, detail):
    with pytest.raises(EvalOptionError) as info:
        check_metric_options(options)
    assert info.value.option == option and info.value.detail.startswith(detail)
    with pytest.raises(EvalOptionError) as info:  # before anything is read: no checkpoint
        evaluate_checkpoint("nosuch.ckpt", ["elbo"], **options)
    assert info.value.option == option and info.value.detail.startswith(detail)


def test_declarations_are_checked_when_made():
    with pytest.raises(ValueError, match="default fails its own check"):
        MetricOption("toy_n", int, 0, "a count", ge=1)
    with pytest.raises(ValueError, match="taken by evaluate_checkpoint"):
        MetricOption("limit", int, 1, "images")
    with pytest.raises(ValueError, match="type must be"):
        MetricOption("toy_list", list, [], "a list")
    with pytest.raises(ValueError, match="declares an option twice"):
        register_metric("toy_twice", "x", title="x", rows=lambda r: [], options=[
            MetricOption("toy_a", int, 1, "a"), MetricOption("toy_a", int, 2, "a")])


def test_reserved_names_cover_evaluate_checkpoints_own_keywords():
    keywords = [name for name, p in inspect.signature(evaluate_checkpoint).parameters.items()
                if p.kind is not p.VAR_KEYWORD]
    assert set(keywords) <= RESERVED_NAMES


def test_a_declared_default_is_what_a_metric_reads():
    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    model = build_model("conv", (1, 8, 8), likelihoods.create("gaussian"), latent_dim=2)
    ctx = EvalContext(model, images, options={"iwae_samples": None, "mi_data": 5})
    assert ctx.option("iwae_samples") == 1000 and ctx.option("mi_data") == 5
    assert ctx.option("mi_samples") is None and ctx.option("mi_samples", 7) == 7
    assert ctx.option("plot_path") is None  # no metric declares it


def _toy_rows(result: dict) -> list[tuple[str, str, str]]:
    return [("toy", str(result["repeats"]), "repeats")]


def _eval_help(capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--help"])
    return capsys.readouterr().out


def test_one_declaration_is_the_flag_the_check_and_the_report(frey_run, frey_model, tmp_path,
                                                              capsys):
    """A metric with one option: registering it is the only edit."""
    ckpt = frey_run / "checkpoints" / "last.ckpt"
    with pytest.raises(EvalOptionError, match="toy_repeats: not an option of any metric"):
        evaluate_checkpoint(ckpt, ["elbo"], toy_repeats=2)

    @register_metric("toy_repeat", "repeats a number", title="toy", rows=_toy_rows, options=[
        MetricOption("toy_repeats", int, 3, "how many times", ge=1)])
    def run(ctx):
        return {"available": True, "repeats": ctx.option("toy_repeats")}

    try:
        assert "toy_repeats" in metric_options()
        # the CLI flag, its help and the check (as --flag-name detail)
        assert _parsed_options(["--toy-repeats", "5"]) == {"toy_repeats": 5}
        assert "--toy-repeats" in _eval_help(capsys)
        assert main(["eval", str(ckpt), "--metrics", "toy_repeat", "--toy-repeats", "0"]) == 2
        assert "--toy-repeats must be >= 1, got 0" in capsys.readouterr().err
        with pytest.raises(EvalOptionError, match="toy_repeats must be an integer, got '2'"):
            evaluate_checkpoint(ckpt, ["toy_repeat"], toy_repeats="2")
        assert eval_flags({"toy_repeats": 4}) == ["--toy-repeats", "4"]
        # the value reaches the metric and the report's options; the default where not given
        out = tmp_path / "toy.json"
        result = evaluate_checkpoint(ckpt, ["toy_repeat"], limit=4, device="cpu",
                                     toy_repeats=4, out=out)
        assert result.report["metrics"]["toy_repeat"]["repeats"] == 4
        assert json.loads(out.read_text())["options"]["toy_repeats"] == 4
        assert main(["eval", str(ckpt), "--metrics", "toy_repeat", "--limit", "4",
                     "--device", "cpu", "--toy-repeats", "6"]) == 0
        assert "| toy | 6 | repeats |" in capsys.readouterr().out
        report = evaluate(frey_model, torch.zeros(2, 1, 28, 20, dtype=torch.uint8),
                          ["toy_repeat"])
        assert report["options"]["toy_repeats"] == 3
        assert report["metrics"]["toy_repeat"]["repeats"] == 3
    finally:
        METRICS.unregister("toy_repeat")
    assert "toy_repeats" not in metric_options()
    assert "--toy-repeats" not in _eval_help(capsys)


def test_two_metrics_may_not_declare_one_option():
    @register_metric("toy_dup", "declares elbo_samples again", title="dup", rows=_toy_rows,
                     options=[MetricOption("elbo_samples", int, 1, "again", ge=1)])
    def run(ctx):
        return {"available": True, "repeats": 0}

    try:
        with pytest.raises(ValueError, match="'elbo_samples' is declared by both 'elbo' and "
                                             "'toy_dup'"):
            metric_options()
    finally:
        METRICS.unregister("toy_dup")
    assert metric_options()["elbo_samples"].default == 10
