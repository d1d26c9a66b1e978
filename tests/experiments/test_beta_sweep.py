"""Table 1's verdicts over a refined beta grid: an added beta joins "beats every beta" and "near
the tuned beta" once all its seeds are in, and the decade grid's own answer stays visible."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from sigmavae.experiments.beta_sweep import BetaSweep
from sigmavae.experiments.framework import Context, Results
from sigmavae.experiments.heads import SWEEP_BETAS
from sigmavae.experiments.presets import PRESETS, DataChoice
from sigmavae.experiments.runs import RunStore
from sigmavae.experiments.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from sigmavae.experiments.sweep import best_beta

#: test bounds (nats/image) by beta; the learned and optimal sigma-VAEs end at beta ~0.027
BOUNDS = {0.001: 35000.0, 0.01: -817.0, 0.03: -1500.0, 0.1: -1279.0, 1.0: 1832.0, 10.0: 5308.0}
SIGMA_VAES = {"learned_sigma": (-2081.0, 0.0271), "optimal_sigma": (-2083.0, 0.0276)}


def _context(tmp_path, refine: tuple[float, ...]) -> Context:
    data = DataChoice("c10", "folder", None, {}, "CIFAR-10 (JPEG copy)", stands_in_for="CIFAR-10")
    preset = replace(PRESETS["paper-length"], refine_betas=refine)
    return Context(preset, {"svhn": data}, RunStore(tmp_path / "runs"), tmp_path / "out")


def _write_runs(ctx: Context, skip: set[tuple[str, int]] = frozenset(),
                float32_bound: float | None = None,
                fids: dict[str, float] | None = None) -> Results:
    """Evaluated runs of every spec but ``skip`` ((row, seed)), with the numbers above (each
    seed a little apart, so that every mean has a standard error); the float32 check run where
    its bound is given; with ``fids`` (by row), each run's FID (seed s: + 0.1 s) with a
    bootstrap SE of 0.2, on one feature extractor."""
    specs = BetaSweep().runs(ctx)
    for spec in specs:
        if (spec.row, spec.seed) in skip or (spec.row == "optimal_sigma_float32"
                                             and float32_bound is None):
            continue
        bound, beta = SIGMA_VAES.get(spec.row, (None, None))
        if spec.row == "optimal_sigma_float32":
            bound, beta = float32_bound, 0.0276
        if bound is None:
            beta = float(spec.row.removeprefix("beta_vae_"))
            bound = BOUNDS[beta]
        folder = ctx.store.folder(spec)
        folder.mkdir(parents=True)
        elbo = {"available": True, "bound_valid": True,
                "effective_beta": beta * (1 + 0.01 * spec.seed),
                "single_sample": {"neg_elbo_nats_per_image": bound + spec.seed,
                                  "neg_elbo_stderr_nats_per_image": 1.0}}
        (folder / "final.json").write_text(json.dumps({"step": 5632}))
        metrics: dict = {"elbo": elbo}
        if fids is not None and spec.row in fids:
            metrics["fid"] = {"available": True, "fid": fids[spec.row] + 0.1 * spec.seed,
                              "fid_bootstrap_stderr": 0.2, "features": "classifier (test)"}
        (folder / "eval.json").write_text(json.dumps({"metrics": metrics}))
    return Results(ctx.store, specs)


def _verdicts(ctx: Context, results: Results) -> dict[str, tuple[str, str]]:
    section = BetaSweep().analyse(ctx, results)
    return {v.claim.id: (v.status, v.evidence) for v in section.verdicts}


def test_an_added_beta_joins_the_verdicts_once_all_its_seeds_are_in(tmp_path):
    ctx = _context(tmp_path, (0.03,))
    assert ctx.preset.table1_betas() == (0.001, 0.01, 0.03, 0.1, 1.0, 10.0)
    verdicts = _verdicts(ctx, _write_runs(ctx))
    status, evidence = verdicts["sigma-near-tuned-beta"]
    # 0.03 is the best by the bound; the learned 0.0271 is 0.04 decades from it
    assert status == REPRODUCED
    assert "best beta of the sweep by the bound: 0.03" in evidence
    learned = sum(math.log10(0.0271 * (1 + 0.01 * seed)) for seed in range(3)) / 3
    distance = abs(learned - math.log10(0.1))
    assert (f"on the paper's decade grid alone the best beta is 0.1, {distance:.2f} decades "
            "from the learned one: not near") in evidence
    assert "beta 0.03: -1499.0" in verdicts["optimal-beats-sweep"][1]


def test_until_then_the_verdicts_stand_on_the_decades(tmp_path):
    ctx = _context(tmp_path, (0.03,))
    results = _write_runs(ctx, skip={("beta_vae_0.03", 1), ("beta_vae_0.03", 2)})
    section = BetaSweep().analyse(ctx, results)
    status, evidence = {v.claim.id: (v.status, v.evidence) for v in section.verdicts}[
        "sigma-near-tuned-beta"]
    assert status == NOT_REPRODUCED and "by the bound: 0.1" in evidence
    assert "beta = 0.03: 1 of 3 seeds finished; the verdicts leave it out" in " ".join(
        section.notes)
    # the row is in the table all the same, from the seed that finished
    row = next(r for r in section.table if r["decoder"] == "beta-VAE, beta = 0.03")
    assert row["-log p bound (nats/image)"].startswith("-1500.0")
    # the decoders' beta-VAE row keeps the decades' best meanwhile (not the paper's fallback)
    assert best_beta(ctx)[0] == 0.1


def test_the_decoders_beta_vae_row_takes_the_added_beta_when_it_is_best(tmp_path):
    ctx = _context(tmp_path, (0.03,))
    _write_runs(ctx)
    assert best_beta(ctx) == (0.03, "the beta-sweep's best beta by the test bound (0.03)")


def test_the_optimal_sigma_vae_must_beat_the_added_beta_too(tmp_path, monkeypatch):
    ctx = _context(tmp_path, (0.03,))
    monkeypatch.setitem(BOUNDS, 0.03, -2500.0)
    status, evidence = _verdicts(ctx, _write_runs(ctx))["optimal-beats-sweep"]
    assert status == NOT_REPRODUCED and "beta 0.03: -2499.0" in evidence
    assert evidence.endswith("on the paper's decade grid alone the optimal sigma-VAE beats "
                             "every one")


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_the_other_presets_keep_the_papers_decades(preset):
    assert PRESETS[preset].table1_betas() == SWEEP_BETAS


@pytest.mark.parametrize("float32_bound, said", [
    # the optimal sigma-VAE's seeds: -2083, -2082, -2081 (SD 1): one more in -2082 +- 5.0
    (-2078.0, "test bound -2078.0 nats/image against -2082.0 (seeds -2083.0 to -2081.0, SD 1.0; "
              "one more seed in [-2087.0, -2077.0] with probability 0.95): inside, 4.0 seed SDs "
              "from the mean"),
    (-2076.0, "So float32 changes test bound beyond the seed spread."),
])
def test_the_float32_run_is_held_against_one_more_seeds_interval(tmp_path, float32_bound, said):
    ctx = _context(tmp_path, ())
    section = BetaSweep().analyse(ctx, _write_runs(ctx, float32_bound=float32_bound))
    note = next(n for n in section.notes if n.startswith("Precision check"))
    assert said in note
    assert "FID: n/a" in note  # no FID in these runs: said, not compared


#: FIDs by row near the paper's Table 2 (SVHN): the shared sigma-VAE's (Table 1's sigma-VAE FID)
#: the lowest, the optimal one's just below the best beta's; beta = 0.03 is not in the paper
TABLE1_FIDS = {"beta_vae_0.001": 44.5, "beta_vae_0.01": 27.9, "beta_vae_0.03": 25.0,
               "beta_vae_0.1": 28.3, "beta_vae_1": 70.4, "beta_vae_10": 219.3,
               "learned_sigma": 22.0, "optimal_sigma": 24.8}


def test_the_shared_sigma_vae_must_have_a_lower_fid_than_every_beta(tmp_path):
    ctx = _context(tmp_path, (0.03,))
    status, evidence = _verdicts(ctx, _write_runs(ctx, fids=TABLE1_FIDS))[
        "sigma-samples-beat-sweep"]
    assert status == REPRODUCED
    assert evidence.startswith("shared sigma-VAE (learned sigma) 22.1 ± 0.12 (SE: the runs' "
                               "own) (FID, substitute features) vs beta 0.001: 44.6")
    # the optimal sigma-VAE (24.9) is within the noise of beta = 0.03 (25.1): shown, not required
    assert ("on the paper's decade grid alone the shared sigma-VAE (learned sigma) beats every "
            "one; optimal sigma-VAE (shown, not required): 24.9 ± 0.12 (SE: the runs' own), "
            "is undecided") in evidence


def test_a_beta_with_sharper_samples_reverses_the_fid_verdict(tmp_path):
    # beta = 0.001's FID below the shared sigma-VAE's beyond 2 SE: not reproduced, on the
    # decade grid too; one beta within the noise of it alone would leave it inconclusive
    ctx = _context(tmp_path, (0.03,))
    fids = {**TABLE1_FIDS, "beta_vae_0.001": 15.0}
    status, evidence = _verdicts(ctx, _write_runs(ctx, fids=fids))["sigma-samples-beat-sweep"]
    assert status == NOT_REPRODUCED
    assert "alone the shared sigma-VAE (learned sigma) does not beat every one" in evidence
    close = {**TABLE1_FIDS, "beta_vae_0.03": 22.2}
    assert _verdicts(ctx, _write_runs(replace(ctx, store=RunStore(tmp_path / "other")),
                                      fids=close))["sigma-samples-beat-sweep"][0] == INCONCLUSIVE


def test_without_fids_the_fid_verdict_is_not_decided(tmp_path):
    ctx = _context(tmp_path, ())
    status, _ = _verdicts(ctx, _write_runs(ctx))["sigma-samples-beat-sweep"]
    assert status == INCONCLUSIVE
