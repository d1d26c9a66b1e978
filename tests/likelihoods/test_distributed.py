"""Two real processes (gloo on CPU): the all-reduced optimal sigma equals one process's value."""

from __future__ import annotations

import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sigmavae.likelihoods import create

NAMES = ("optimal_sigma", "optimal_sigma_per_dim", "optimal_sigma_per_image")


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
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True)
                 for r in range(2)]
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
