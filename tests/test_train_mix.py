"""Mixup / cutmix and the weights' EMA: the mixing arithmetic, the loss with soft targets, the
averaging, one training step through the trainer, and the settings. Tensors on the CPU here (in
both memory layouts the trainer feeds the model); the same on CUDA tensors in the gpu tests.

Whole runs with mixing and EMA (exact resume, checkpoints, DDP) are the resume and DDP fixtures
of test_train.py."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import GoogLeNetOutputs

from train.config import ConfigError, TrainConfig
from train.distributed import DistContext
from train.ema import WeightEma
from train.metrics import EPOCH_FIELDS, MetricsLog
from train.mix import BatchMixer, soft_targets
from train.model import build_googlenet, googlenet_loss
from train.runner import best_by
from train.signals import StopRequest
from train.trainer import Trainer

N, CLASSES, SIZE = 8, 10, 32


def _batch(layout: str, device: str = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images as the model sees them (NCHW; "nhwc": NHWC storage viewed as channels-last
    NCHW, as the GPU loader's batches) and distinct labels, so each target weight is readable."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(N, SIZE, SIZE, 3, generator=gen).to(device).permute(0, 3, 1, 2)
    return images if layout == "nhwc" else images.contiguous(), torch.arange(N, device=device)


def _mixer(*, mixup: float = 0.0, cutmix: float = 0.0, switch: float = 0.5, prob: float = 1.0,
           seed: int = 0, classes: int = CLASSES) -> BatchMixer:
    return BatchMixer(num_classes=classes, mixup_alpha=mixup, cutmix_alpha=cutmix, switch_prob=switch,
                      mix_prob=prob, seed=seed)


def _check_cutmix(images: torch.Tensor, labels: torch.Tensor, mixer: BatchMixer) -> float:
    """One cutmix batch: pixels taken from the flipped batch form one box through all channels,
    their share is exactly 1 - lambda, and the targets say the same. Returns lambda."""
    mixed = mixer(images, labels)
    assert mixed.kind == "cutmix"
    assert mixed.images.shape == images.shape and mixed.images.dtype == images.dtype
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    assert mixed.images.is_contiguous(memory_format=torch.channels_last) == channels_last
    partner = images.flip(0)
    from_partner = (mixed.images == partner) & (images != partner)
    from_own = mixed.images == images
    assert bool((from_partner | from_own).all())  # every pixel is one of the two, unblended
    mask = from_partner[:, 0]  # [N, H, W]
    assert bool((from_partner == mask[:, None]).all())  # the box cuts H and W, all channels alike
    rows, cols = mask[0].any(dim=1).nonzero(), mask[0].any(dim=0).nonzero()
    if rows.numel():
        box = mask[0, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert bool(box.all()) and int(box.numel()) == int(mask[0].sum())  # a filled rectangle
    assert bool((mask == mask[0]).all())  # one box for the whole batch
    share = mask[0].double().mean().item()
    assert share == pytest.approx(1.0 - mixed.lam, abs=1e-12)
    assert mixed.targets[:, :N].diagonal().tolist() == pytest.approx([mixed.lam] * N)
    assert mixed.targets[torch.arange(N), labels.flip(0)].tolist() == pytest.approx([share] * N)
    assert mixed.targets.sum(dim=1).tolist() == pytest.approx([1.0] * N)
    return mixed.lam


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_cutmix_pixel_share_equals_the_target_weight(layout: str) -> None:
    """Over 40 batches (boxes clipped at the borders among them), the fraction of pixels taken
    from the flipped batch is exactly 1 - lambda, in the contiguous and the channels-last layout."""
    images, labels = _batch(layout)
    mixer = _mixer(cutmix=1.0, seed=3)
    lams = [_check_cutmix(images, labels, mixer) for _ in range(40)]
    assert len(set(lams)) > 20 and min(lams) < 0.5 < max(lams)
    # The same draws in the other layout give the same images (the box cuts H and W in both).
    other, _ = _batch("nchw" if layout == "nhwc" else "nhwc")
    assert torch.equal(other, images) and other.stride() != images.stride()
    first, second = _mixer(cutmix=1.0, seed=5), _mixer(cutmix=1.0, seed=5)
    assert torch.equal(first(images, labels).images, second(other, labels).images)


def test_mixup_blends_pixels_and_targets_by_lambda() -> None:
    """Mixup: every pixel is lambda x its own + (1 - lambda) x the flipped batch's, and each
    target row puts lambda on the own label, 1 - lambda on the partner's; rows sum to one."""
    images, labels = _batch("nhwc")
    mixer = _mixer(mixup=0.4, seed=1)
    for _ in range(5):
        mixed = mixer(images, labels)
        lam = mixed.lam
        assert mixed.kind == "mixup" and 0.0 < lam < 1.0
        torch.testing.assert_close(mixed.images, lam * images + (1 - lam) * images.flip(0))
        assert mixed.images.is_contiguous(memory_format=torch.channels_last)
        expected = torch.zeros(N, CLASSES)
        expected[torch.arange(N), labels] += lam
        expected[torch.arange(N), labels.flip(0)] += 1 - lam
        torch.testing.assert_close(mixed.targets, expected)
        assert torch.equal(mixed.labels, labels if lam >= 0.5 else labels.flip(0))


def test_soft_targets_of_a_pair_with_the_same_label_is_one_hot() -> None:
    """A sample paired with one of its own class (or itself, the middle of an odd batch) keeps
    a one-hot target."""
    targets = soft_targets(torch.tensor([2, 5, 2]), 6, 0.3)
    torch.testing.assert_close(targets, torch.tensor([[0, 0, 1.0, 0, 0, 0], [0, 0, 0, 0, 0, 1.0],
                                                      [0, 0, 1.0, 0, 0, 0]]))


def test_switch_and_mix_probabilities_pick_the_kind() -> None:
    """--mix-prob 0 never mixes, --mix-switch-prob 1 / 0 always picks cutmix / mixup, one alpha
    alone picks its kind; with both on, both occur; the same seed gives the same draws, and a
    saved generator state repeats them."""
    images, labels = _batch("nchw")
    assert {_mixer(mixup=1, cutmix=1, prob=0.0)(images, labels).kind for _ in range(10)} == {"none"}
    unmixed = _mixer(mixup=1, prob=0.0)(images, labels)
    assert unmixed.images is images and unmixed.lam == 1.0 and torch.equal(unmixed.labels, labels)
    assert {_mixer(mixup=1, cutmix=1, switch=1.0)(images, labels).kind for _ in range(10)} == {"cutmix"}
    assert {_mixer(mixup=1, cutmix=1, switch=0.0)(images, labels).kind for _ in range(10)} == {"mixup"}
    assert _mixer(cutmix=1)(images, labels).kind == "cutmix"
    both = _mixer(mixup=1, cutmix=1, prob=0.7, seed=9)
    state = both.state()
    draws = [(m.kind, m.lam) for m in (both(images, labels) for _ in range(30))]
    assert {kind for kind, _ in draws} == {"none", "mixup", "cutmix"}
    same_seed = _mixer(mixup=1, cutmix=1, prob=0.7, seed=9)
    assert [(m.kind, m.lam) for m in (same_seed(images, labels) for _ in range(30))] == draws
    both.restore(state)
    assert [(m.kind, m.lam) for m in (both(images, labels) for _ in range(30))] == draws


def test_mixed_loss_with_label_smoothing_is_hand_computed() -> None:
    """CrossEntropyLoss(label_smoothing=e) on soft targets t uses (1 - e) t + e / K, the same as
    mixing smoothed one-hot targets: checked against the formula and against lambda x CE(own) +
    (1 - lambda) x CE(partner); googlenet_loss gives each auxiliary head the same targets."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(N, CLASSES, generator=gen, dtype=torch.float64)
    labels = torch.randint(CLASSES, (N,), generator=gen)
    lam, eps = 0.3, 0.1
    targets = soft_targets(labels, CLASSES, lam).double()
    criterion = nn.CrossEntropyLoss(label_smoothing=eps)
    by_hand = -(((1 - eps) * targets + eps / CLASSES) * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(criterion(logits, targets), by_hand)
    by_label = lam * criterion(logits, labels) + (1 - lam) * criterion(logits, labels.flip(0))
    torch.testing.assert_close(criterion(logits, targets), by_label)
    aux1, aux2 = logits.flip(1), logits * 0.5
    total, main = googlenet_loss(GoogLeNetOutputs(logits, aux2, aux1), targets, criterion)
    torch.testing.assert_close(total, by_hand + 0.3 * (criterion(aux1, targets) + criterion(aux2, targets)))
    assert main is logits


# --- the EMA ------------------------------------------------------------------------------------


def test_ema_weight_per_update() -> None:
    """decay ** every per update (the same horizon in steps), and the warm-up ramp min(D, (1+t)/(10+t))."""
    model = nn.Linear(2, 2)
    assert WeightEma(model, decay=0.9).weight_at(7) == pytest.approx(0.1)
    assert WeightEma(model, decay=0.9, every=3).weight_at(6) == pytest.approx(1 - 0.9**3)
    warm = WeightEma(model, decay=0.99, every=2, warmup=True)
    assert warm.weight_at(2) == pytest.approx(1 - (3 / 12) ** 2)
    assert warm.weight_at(10_000) == pytest.approx(1 - 0.99**2)
    with pytest.raises(ValueError, match=r"EMA decay must be in \[0, 1\), got 1.0"):
        WeightEma(model, decay=1.0)


class RecordingLoss(nn.CrossEntropyLoss):
    """torch's cross-entropy, keeping the targets of each call."""

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.seen: list[torch.Tensor] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen.append(target)
        return super().forward(logits, target)


def _trainer(tmp_path: Path, *, mixer: BatchMixer | None, ema_decay: float, ema_every: int = 1,
             device: str = "cpu") -> Trainer:
    """A Trainer around a 4-class GoogLeNet (as the runner builds it, without files or loaders)."""
    torch.manual_seed(0)
    model = build_googlenet(4).to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    cfg = TrainConfig(data=str(tmp_path), device="gpu" if device == "cuda" else "cpu")
    return Trainer(cfg=cfg, ctx=DistContext(), device=torch.device(device), model=model, optimizer=optimizer,
                   scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                   scaler=torch.amp.GradScaler(device, enabled=False),
                   criterion=RecordingLoss(label_smoothing=0.1),
                   metrics=MetricsLog(tmp_path, enabled=False), stop=StopRequest(),
                   to_model_layout=(lambda x: x.permute(0, 3, 1, 2)) if device == "cuda" else (lambda x: x),
                   mixer=mixer, ema=WeightEma(model, decay=ema_decay, every=ema_every) if ema_decay else None)


def _train_batch(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    shape = (4, SIZE, SIZE, 3) if device == "cuda" else (4, 3, SIZE, SIZE)
    return torch.randn(shape, generator=gen).to(device), torch.tensor([0, 1, 2, 3], device=device)


def test_trainer_step_mixes_every_head_and_averages_the_weights(tmp_path: Path) -> None:
    """Two optimizer steps through Trainer.train_step with cutmix and an EMA (decay 0.6): the main
    and both auxiliary losses get the mixed soft targets; top-1 is scored against the dominant
    labels; the EMA's parameters equal the hand-computed average of the initial weights and the
    weights after each step, and its buffers (BatchNorm statistics, batch counters) are the model's."""
    trainer = _trainer(tmp_path, mixer=_mixer(cutmix=1.0, seed=11, classes=4), ema_decay=0.6)
    twin = _mixer(cutmix=1.0, seed=11, classes=4)  # the same draws, to know the targets
    images, labels = _train_batch()
    expected = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    for step in (1, 2):
        mixed = twin(images, labels)
        trainer.criterion.seen.clear()
        _loss, _logits, scored = trainer.train_step(images, labels, step)
        assert len(trainer.criterion.seen) == 3  # main, aux1, aux2
        for target in trainer.criterion.seen:
            assert target.shape == (4, 4)
            torch.testing.assert_close(target, mixed.targets)
        assert torch.equal(scored, mixed.labels)
        for name, p in trainer.model.named_parameters():
            expected[name] = 0.6 * expected[name] + 0.4 * p.detach()
    averaged = trainer.ema.averaged()
    for name, p in averaged.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(averaged.fc.weight, trainer.model.fc.weight)
    buffers = dict(trainer.model.named_buffers())
    for name, b in averaged.named_buffers():
        assert torch.equal(b, buffers[name]), name
    assert int(buffers["conv1.bn.num_batches_tracked"]) == 2


def test_evaluation_is_unmixed_and_scores_the_ema(tmp_path: Path) -> None:
    """evaluate() runs the raw weights and the EMA on the same unmixed batches, in one pass."""
    trainer = _trainer(tmp_path, mixer=_mixer(mixup=1.0, cutmix=1.0, classes=4), ema_decay=0.5)
    images, labels = _train_batch()
    trainer.train_step(images, labels, 1)
    scores = trainer.evaluate([(images, labels), (images[:2], labels[:2])])
    assert scores["val_images"] == 6
    for prefix, model in (("val", trainer.model), ("ema_val", trainer.ema.module)):
        with torch.no_grad():
            logits = torch.cat([model(images), model(images[:2])])
        truth = torch.cat([labels, labels[:2]])
        loss = nn.functional.cross_entropy(logits, truth).item()
        assert scores[f"{prefix}_loss"] == pytest.approx(loss, rel=1e-5)
        assert scores[f"{prefix}_top1"] == pytest.approx((logits.argmax(1) == truth).double().mean().item())
    assert scores["val_loss"] != scores["ema_val_loss"]


def test_best_checkpoint_goes_by_the_ema_when_there_is_one() -> None:
    assert best_by({"val_top1": 0.6, "ema_val_top1": 0.4}) == 0.4
    assert best_by({"val_top1": 0.6}) == 0.6


# --- settings and records -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"mixup": -0.5}, "--mixup: expected a number >= 0, got -0.5"),
        ({"cutmix": "1"}, "--cutmix: expected a number, got '1'"),
        ({"mix_prob": 1.5}, "--mix-prob: expected a probability in [0, 1], got 1.5"),
        ({"mix_switch_prob": -0.1}, "--mix-switch-prob: expected a probability in [0, 1], got -0.1"),
        ({"ema_decay": 1.0}, "--ema-decay: expected a number in [0, 1), got 1.0"),
        ({"ema_every": 0}, "--ema-every: expected a positive integer, got 0"),
    ],
)
def test_settings_are_validated_in_python_too(tmp_path: Path, setting: dict, message: str) -> None:
    """TrainConfig built in code checks the new settings as the command line does."""
    with pytest.raises(ConfigError) as info:
        TrainConfig(data=str(tmp_path), **setting)
    assert str(info.value) == message


def test_probabilities_of_one_are_accepted(tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tmp_path), mixup=0.2, cutmix=1.0, mix_prob=1.0, mix_switch_prob=1.0)
    assert cfg.mixing and not TrainConfig(data=str(tmp_path)).mixing


def test_resumed_records_of_an_earlier_version_gain_the_ema_columns(tmp_path: Path) -> None:
    """epochs.csv written before the EMA columns existed is rewritten under the current header
    on resume: its rows are kept, the new columns empty."""
    old_fields = [f for f in EPOCH_FIELDS if not f.startswith("ema_")]
    with open(tmp_path / "epochs.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_fields)
        writer.writeheader()
        writer.writerow({f: "1" if f != "epoch" else "0" for f in old_fields})
        writer.writerow({f: "2" if f != "epoch" else "1" for f in old_fields})
    MetricsLog(tmp_path, enabled=True, resumed_at=(1, 5)).close()
    with open(tmp_path / "epochs.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == EPOCH_FIELDS
    assert [row["epoch"] for row in rows] == ["0"] and rows[0]["ema_val_top1"] == ""


# --- on the GPU ----------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_mixing_and_ema_update_without_a_host_sync() -> None:
    """On CUDA tensors in the GPU loader's layout (NHWC viewed as channels-last NCHW): cutmix's
    pixel share is exactly 1 - lambda, mixup blends, and neither the mixing nor the EMA update
    synchronizes with the host (sync debug mode turns any sync into an error)."""
    images, labels = _batch("nhwc", device="cuda")
    cut, blend = _mixer(cutmix=1.0, seed=2), _mixer(mixup=0.4, seed=2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).cuda().to(memory_format=torch.channels_last)
    ema = WeightEma(model, decay=0.9)
    with torch.no_grad():
        model(images)  # new BatchNorm statistics for the EMA to take
        model[0].weight.add_(1.0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mixed = [cut(images, labels) for _ in range(10)] + [blend(images, labels)]
        ema.update(1)
        averaged = ema.averaged()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for _ in range(10):
        _check_cutmix(images, labels, cut)
    last = mixed[-1]
    assert last.images.is_cuda and last.images.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(last.images, last.lam * images + (1 - last.lam) * images.flip(0))
    assert last.targets.is_cuda and last.targets.sum(dim=1).tolist() == pytest.approx([1.0] * N)
    torch.testing.assert_close(averaged[0].weight, model[0].weight - 0.9)  # 0.9 x w + 0.1 x (w + 1)
    assert torch.equal(averaged[1].running_mean, model[1].running_mean)


@pytest.mark.gpu
def test_gpu_trainer_step_mixes_every_head(tmp_path: Path) -> None:
    """On the GPU (channels_last model, NHWC batch): every head gets the mixed soft targets and the
    EMA (decay 0.5) is halfway between the initial weights and the stepped ones."""
    trainer = _trainer(tmp_path, mixer=_mixer(mixup=0.4, cutmix=1.0, seed=4, classes=4), ema_decay=0.5,
                       device="cuda")
    images, labels = _train_batch("cuda")
    before = trainer.model.fc.weight.detach().clone()
    loss, _logits, _scored = trainer.train_step(images, labels, 1)
    assert torch.isfinite(loss).item()
    assert len(trainer.criterion.seen) == 3
    assert all(t.shape == (4, 4) and t.is_cuda for t in trainer.criterion.seen)
    after = trainer.model.fc.weight.detach()
    assert not torch.equal(before, after)
    torch.testing.assert_close(trainer.ema.averaged().fc.weight, 0.5 * before + 0.5 * after)
