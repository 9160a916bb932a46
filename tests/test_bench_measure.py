"""The meter: repeats and warm-up bounded by time and images, full passes, consumers, sections."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.backends import BACKENDS, PEERS, WORKLOADS
from bench.measure import measure
from bench.records import TIMING, Settings
from bench.sweep import DEFAULT_SECTIONS, describe_plan, least_s, plan, worker_counts


class CountingBatches:
    """Three real (small) batches per pass; counts passes to check epoch handling."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for _ in range(3):
            yield torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.int64)


class CountingStep:
    """A consumer that counts the batches it gets in each repeat (``reset`` starts one)."""

    def __init__(self) -> None:
        self.repeats: list[int] = []
        self.warmup = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if self.repeats:
            self.repeats[-1] += 1
        else:
            self.warmup += 1

    def reset(self) -> None:
        self.repeats.append(0)


def test_repeats_last_at_least_the_requested_time_and_images() -> None:
    step = CountingStep()
    m = measure(CountingBatches, warmup_s=0.05, repeat_s=0.1, repeat_images=40, repeats=3, step=step)
    assert len(m.repeat_s) == len(m.repeat_images) == len(m.repeat_pss_mb) == 3
    assert all(seconds >= 0.1 for seconds in m.repeat_s)  # the contract, not a speed
    assert all(images >= 40 and images % 4 == 0 for images in m.repeat_images)  # whole batches
    assert m.warmup_s >= 0.05 and m.warmup_images >= 4
    assert [4 * n for n in step.repeats] == list(m.repeat_images)  # reset before every repeat
    assert step.warmup * 4 == m.warmup_images
    assert m.images_per_s_min <= m.images_per_s <= m.images_per_s_max
    assert m.cpu_s_per_1000 >= 0 and m.peak_pss_mb > 0 and m.peak_gpu_mb is None
    assert m.repeat_gpu_mb is None and 0.0 <= m.data_wait_frac <= 1.0


def test_full_passes_are_epochs() -> None:
    batches = CountingBatches()
    m = measure(lambda: batches, warmup_s=0.0, repeat_s=10.0, repeats=4, passes=True)
    assert m.repeat_images == (12, 12, 12, 12)  # one epoch each, whatever repeat_s says
    assert batches.passes == 5  # the warm-up pass is finished untimed first


def test_measure_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure(CountingBatches, repeats=0)


def test_worker_counts_are_powers_of_two_below_the_cores() -> None:
    assert worker_counts(16) == [1, 2, 4, 8]
    assert worker_counts(2) == [1]
    assert worker_counts(1) == []


def test_full_gpu_plan_fits_its_budget() -> None:
    """The full sweep on a 16-core GPU machine: what it measures, and the sweep's own estimate
    (timed minimums plus start-up per job) within 8 minutes (arithmetic on the plan, not a timing)."""
    defaults = tuple(b for b in BACKENDS if b not in PEERS)  # a GPU run takes the peers when named
    settings = Settings(sections=DEFAULT_SECTIONS["gpu"], backends=defaults,
                        workloads=tuple(WORKLOADS), device="gpu", batch_size=256, max_workers=16,
                        **TIMING["full"])
    sections = plan(settings)
    counts = {name: len(jobs) for name, jobs in sections.items()}
    assert counts == {"throughput": 32, "scaling": 12, "hw-decoder": 3, "e2e": 6, "soak": 1, "shards": 2,
                      "storage": 2}  # from the S3 server; the local figures are the shards section's
    assert least_s(sections) <= 8 * 60
    skipped = [(j.backend, j.spec.workload) for jobs in sections.values() for j in jobs if j.skip_reason()]
    assert skipped == [("tfdata", "train-aug")] and "1 skipped" in describe_plan(sections)
    e2e = sections["e2e"]
    assert [(j.backend, j.spec.workload) for j in e2e] == [
        ("synthetic", "train"), ("dali-gpu", "train"), ("dali-ref", "train"), ("torchvision-gpu", "train"),
        ("dali-gpu", "train-aug"), ("torch-tv", "train-aug")]
    assert {j.spec.batch_size for j in e2e} == {256}
    no_aug = dataclasses.replace(settings, sections=("e2e",), workloads=("train",))
    assert [j.spec.workload for j in plan(no_aug)["e2e"]] == ["train"] * 4  # train-aug only when asked for
    # The peers beside dali-gpu, every workload: a second command of the GPU check (docs/peers.md).
    peers = plan(dataclasses.replace(settings, sections=("throughput",), backends=("dali-gpu", *PEERS)))
    assert len(peers["throughput"]) == 16 and least_s(peers) <= 2.5 * 60


def test_quick_cpu_run_is_throughput_and_overlap_on_train_with_and_without_randaugment() -> None:
    from bench.cli import get_args_parser, resolve

    settings, _ = resolve(get_args_parser().parse_args(["--quick", "--device", "cpu"]))
    assert settings.sections == ("throughput", "overlap") and settings.workloads == ("train", "train-aug")
    assert settings.warmup_s < 1.0 and settings.repeat_s < 2.0
    assert "dali-ref" in settings.backends
