"""The training loop: one method (`methods`) per run, per-layer sparsity of every update pass logged per epoch.

The method prepares each batch with the model in evaluation mode; only the update pass — forward,
objective, backward — runs in training mode inside the sparsity probe.

Checkpoints (`TrainState`): at every epoch boundary, and after the current batch when a stop signal arrives
(`interrupts`), the loop hands `save` everything the rest of the run depends on: weights, optimizer, the three
random generators (torch's global one, the batch order's and the perturbations'), the rows logged so far and the
running sums of a part-done epoch. Training resumed from one gives bitwise the same weights and rows as training
that never stopped (on the CPU; tests/test_resume.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsity_latency.config import Config
from sparsity_latency.data import load_data
from sparsity_latency.errors import NonFiniteLossError
from sparsity_latency.evaluation import accuracy, batches
from sparsity_latency.interrupts import NEVER, StopRequest
from sparsity_latency.methods import METHODS
from sparsity_latency.models import build_for
from sparsity_latency.models.gating import gate_loss
from sparsity_latency.probes import NET, LayerMeans, SparsityProbe, layer_sparsity

STATE_FORMAT = 1


@dataclass
class TrainResult:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    rows: list[dict]  # one per epoch × layer, columns of the train table (without run columns)


def train(config: Config, device: torch.device, on_epoch: Callable[[int], None] | None = None,
          resume: dict | None = None, save: Callable[[dict], None] | None = None,
          stop: StopRequest = NEVER) -> TrainResult:
    """Train one run; deterministic for `config.seed` on the CPU (CUDA kernels may not be).

    `resume`: a state from `save` (a checkpoint of this run) to continue from; `save(state)` is called at every
    epoch boundary and, when `stop` is requested, after the current batch, before `stop.stop` ends the run.
    """
    torch.manual_seed(config.seed)
    data = load_data(config.data, config.seed)
    model = build_for(config, data).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    method = METHODS[config.train.method]
    shuffle = torch.Generator().manual_seed(config.seed)
    perturb = torch.Generator().manual_seed(config.seed + 1)
    rows: list[dict] = []
    first_epoch, done_batches, partial = 1, 0, None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        shuffle.set_state(resume["shuffle_rng"])
        perturb.set_state(resume["perturb_rng"])
        rows = list(resume["rows"])
        first_epoch, done_batches = resume["epoch"] + 1, resume["batch"]
        partial = resume.get("partial")

    def state(epoch: int, batch: int, epoch_shuffle: torch.Tensor, running: dict | None) -> dict:
        return {"format": STATE_FORMAT, "epoch": epoch, "batch": batch, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "shuffle_rng": epoch_shuffle,
                "perturb_rng": perturb.get_state(), "rows": rows, "partial": running,
                "complete": epoch == config.train.epochs and batch == 0}

    for epoch in range(first_epoch, config.train.epochs + 1):
        epoch_shuffle = shuffle.get_state()  # a part-done epoch restarts its order from here
        model.train()
        means = LayerMeans()
        loss_sum = correct = 0.0
        skip = 0
        if partial is not None:
            means.restore(partial["means"])
            loss_sum, correct, skip = partial["loss_sum"], partial["correct"], done_batches
            partial = None
        for index, (xb, yb) in enumerate(batches(data.train_x, data.train_y, config.train.batch_size, device,
                                                 shuffle, skip), start=skip):
            model.eval()  # adversarial examples are made with frozen BatchNorm statistics
            step = method(model, xb, yb, config.train, perturb)
            x_train = step.inputs.detach().requires_grad_(True)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with SparsityProbe(model) as probe:
                logits = model(x_train)
                loss = step.objective(logits)
                gates = gate_loss(model)
                (loss if gates is None else loss + config.model.gate_loss_weight * gates).backward()
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(f"the training loss became {loss.item()} at epoch {epoch}, batch {index + 1} "
                                    f"(lower train.lr, or check the data)")
            means.add(layer_sparsity(model, probe, x_train.grad, config.train.grad_tau))
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            correct += float((logits[:len(yb)].argmax(1) == yb).sum())
            if stop.requested:
                if save is not None:
                    save(state(epoch - 1, index + 1, epoch_shuffle,
                               {"means": means.state(), "loss_sum": loss_sum, "correct": correct}))
                stop.stop(f"at epoch {epoch}, batch {index + 1}")
        model.eval()
        layers = means.rows()
        layers[NET].update(
            loss=loss_sum / len(data.train_x),
            accuracy=correct / len(data.train_x),
            test_accuracy=accuracy(model, data.test_x, data.test_y, config.train.batch_size, device),
        )
        rows.extend({"epoch": epoch, "layer": layer, **values} for layer, values in layers.items())
        if save is not None:
            save(state(epoch, 0, shuffle.get_state(), None))
        if on_epoch is not None:
            on_epoch(epoch)
        if stop.requested:
            stop.stop(f"after epoch {epoch}")
    return TrainResult(model, optimizer, rows)
