"""Two real processes (gloo on CPU): the all-reduced optimal sigma equals one process's value."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sigmavae.likelihoods import create, gaussian_nll
from sigmavae.likelihoods.distributed import is_distributed, local_statistics
from sigmavae.models import build_conv_vae
from sigmavae.training.fastpath import FastPath, measure_speedup

NAMES = ("optimal_sigma", "optimal_sigma_per_dim", "optimal_sigma_per_image")


def _two_processes(worker, prefix: str) -> list[dict]:
    """Run ``worker(rank, 2, init_file, out_dir)`` on two gloo processes; what each rank saved
    as ``out_dir/{prefix}{rank}.pt``."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        return [torch.load(os.path.join(tmp, f"{prefix}{r}.pt"), weights_only=True)
                for r in range(2)]


def _global_batch():
    g = torch.Generator().manual_seed(123)
    x = torch.rand(12, 3, 4, 5, generator=g, dtype=torch.float64)
    params = torch.randn(12, 3, 4, 5, generator=g, dtype=torch.float64)
    return x, params


def _run(x, params, name):
    """Sigma, mean NLL, gradient of the mean NLL, running variance for one (local) batch."""
    head = create(name, decay=0.9).double()
    params = params.clone().requires_grad_(True)
    d = head(params, target=x)
    loss = -d.log_prob(x).mean()
    loss.backward()
    return d.sigma.detach(), loss.detach(), params.grad, head.running_var.clone()


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        x, params = _global_batch()
        shard = slice(rank * 6, (rank + 1) * 6)
        results = {}
        for name in NAMES:
            sigma, loss, grad, running = _run(x[shard], params[shard], name)
            # The global loss is the average of the local mean losses; the gradient w.r.t. this
            # rank's inputs is this rank's gradient (the all-reduce carries the sigma path) / world.
            grad /= world
            loss_sum = loss.clone()
            dist.all_reduce(loss_sum)
            results[name] = {"sigma": sigma, "loss": loss_sum / world, "grad": grad,
                             "running": running}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_optimal_sigma_equals_single_process():
    x, params = _global_batch()
    ranks = _two_processes(_worker, "rank")
    for name in NAMES:
        sigma, loss, grad, running = _run(x, params, name)
        for rank, res in enumerate(ranks):
            r = res[name]
            shard = slice(rank * 6, (rank + 1) * 6)
            local_sigma = sigma[shard] if name == "optimal_sigma_per_image" else sigma
            torch.testing.assert_close(r["sigma"], local_sigma, rtol=1e-12, atol=0)
            torch.testing.assert_close(r["loss"], loss, rtol=1e-12, atol=0)
            torch.testing.assert_close(r["grad"], grad[shard], rtol=1e-10, atol=1e-15)
            torch.testing.assert_close(r["running"], running, rtol=1e-12, atol=0)


def _probe_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """Rank 0 alone times the fast path on an optimal-sigma model (as the trainer's start-up
    hint does) while rank 1 waits at a barrier; then both all-reduce once."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        result: dict[str, object] = {}
        if rank == 0:
            torch.manual_seed(0)
            model = build_conv_vae((3, 16, 16), create("optimal_sigma"))
            images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
            with local_statistics():
                result["inside"] = is_distributed()
            result["factor"] = measure_speedup(model, images, FastPath("bf16-mixed", True, "test"),
                                               torch.device("cpu"), steps=1)
            result["after"] = is_distributed()
        dist.barrier()
        total = torch.ones(1)
        dist.all_reduce(total)  # still in step: every rank reaches the same collective
        result["sum"] = float(total)
        torch.save(result, os.path.join(out_dir, f"probe{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_a_timing_probe_on_one_rank_issues_no_collective():
    ranks = _two_processes(_probe_worker, "probe")
    assert ranks[0]["inside"] is False and ranks[0]["after"] is True
    assert ranks[0]["factor"] > 0
    assert [r["sum"] for r in ranks] == [2.0, 2.0]


# -- masks: sums and counts of the observed entries are all-reduced -------------------------------
def _masked_global_batch():
    """Sequences (12, 5, 3) of unequal lengths, NaN-padded; each rank gets a fully padded one and
    a different number of observed steps, so a mean of per-rank MSEs would be wrong."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(12, 5, 3, generator=g, dtype=torch.float64) * 2
    params = torch.randn(12, 5, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 0, 1, 5, 2, 0, 4, 4, 5, 1, 1])
    mask = torch.arange(5) < lengths.unsqueeze(1)
    return x.masked_fill(~mask.unsqueeze(-1), float("nan")), params, mask


#: The masked cases: each scope, and per_dim shared over time (one sigma per feature).
MASKED_CASES = {name: (name, {}) for name in NAMES} | {
    "per_feature": ("optimal_sigma_per_dim", {"shared_dims": (1,)})}


def _run_masked(x, params, mask, name, **options):
    """Two training steps of a masked head on real data; the second step's sigma, mean NLL and
    its gradient, the running variance, and the functional optimal NLL and sigma."""
    head = create(name, decay=0.9, data_range="real", **options).double()
    head(params - 1.0, target=x, mask=mask)  # a first step: the running average moves
    params = params.clone().requires_grad_(True)
    d = head(params, target=x, mask=mask)
    loss = -d.log_prob(x).mean()
    loss.backward()
    scope = name.removeprefix("optimal_sigma").removeprefix("_") or "shared"
    nll, fn_sigma = gaussian_nll(params.detach(), x, mask=mask, scope=scope, **options)
    return {"sigma": d.sigma.detach(), "loss": loss.detach(), "grad": params.grad,
            "running": head.running_var.clone(), "nll": nll, "fn_sigma": fn_sigma}


def _masked_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        x, params, mask = _masked_global_batch()
        shard = slice(rank * 6, (rank + 1) * 6)
        results = {}
        for case, (name, options) in MASKED_CASES.items():
            r = _run_masked(x[shard], params[shard], mask[shard], name, **options)
            r["grad"] /= world
            dist.all_reduce(r["loss"])
            r["loss"] /= world
            results[case] = r
        torch.save(results, os.path.join(out_dir, f"masked{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_masked_optimal_sigma_equals_single_process():
    x, params, mask = _masked_global_batch()
    ranks = _two_processes(_masked_worker, "masked")
    for case, (name, options) in MASKED_CASES.items():
        one = _run_masked(x, params, mask, name, **options)
        assert bool(torch.isfinite(one["grad"]).all()) and bool(torch.isfinite(one["loss"]))
        if case == "per_feature":
            assert tuple(one["sigma"].shape) == (1, 3)
        for rank, res in enumerate(ranks):
            r = res[case]
            shard = slice(rank * 6, (rank + 1) * 6)
            per_example = name == "optimal_sigma_per_image"
            for key in ("sigma", "fn_sigma"):
                want = one[key][shard] if per_example else one[key]
                if per_example:  # the padded examples hold a stand-in: compare observed ones
                    seen = mask[shard].any(1)
                    want, r[key] = want[seen], r[key][seen]
                torch.testing.assert_close(r[key], want, rtol=1e-12, atol=0)
            torch.testing.assert_close(r["loss"], one["loss"], rtol=1e-12, atol=0)
            torch.testing.assert_close(r["grad"], one["grad"][shard], rtol=1e-10, atol=1e-15)
            torch.testing.assert_close(r["running"], one["running"], rtol=1e-12, atol=0)
            torch.testing.assert_close(r["nll"], one["nll"][shard], rtol=1e-12, atol=1e-12)


# -- a head with its own parameter under DDP: the optimiser check still tells ---------------------
class _Decoded(torch.nn.Module):
    """A decoder and a learned_sigma head in one module (what DDP wraps); forward is the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = torch.nn.Linear(3, 4)
        self.head = create("learned_sigma", data_range="real")
        self.head.optimiser_check.steps = 3

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -self.head(self.decoder(z), target=x).log_prob(x).mean()


def _check_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    from sigmavae.likelihoods import SigmaNotOptimisedWarning

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        result = {}
        for with_head in (True, False):
            torch.manual_seed(0)
            model = _Decoded()
            ddp = DistributedDataParallel(model)
            params = model.parameters() if with_head else model.decoder.parameters()
            opt = torch.optim.Adam(params, lr=1e-2)
            g = torch.Generator().manual_seed(rank)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(5):
                    opt.zero_grad()
                    ddp(torch.randn(4, 3, generator=g), torch.randn(4, 4, generator=g)).backward()
                    opt.step()
            result[f"warned_{with_head}"] = sum(
                issubclass(w.category, SigmaNotOptimisedWarning) for w in caught)
            result[f"sigma_{with_head}"] = model.head.sigma
        torch.save(result, os.path.join(out_dir, f"check{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_the_optimiser_check_under_ddp_warns_only_without_the_head():
    ranks = _two_processes(_check_worker, "check")
    for r in ranks:
        assert r["warned_True"] == 0 and r["warned_False"] == 1
        assert float(r["sigma_False"]) == 1.0 and float(r["sigma_True"]) != 1.0
    # DDP kept the learned sigma in step across the ranks
    assert float(ranks[0]["sigma_True"]) == float(ranks[1]["sigma_True"])
