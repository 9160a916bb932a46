"""Loader contract: exact-once eval over shards, len(), bad arguments, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dali_pipelines import ImageFolderData, PipelineConfig, make_loader, scan_image_folder


def _indexed(root: Path, count: int) -> ImageFolderData:
    """The first ``count`` files labelled by their index, so each sample is identifiable."""
    data = scan_image_folder(root)
    return ImageFolderData(root=data.root, files=data.files[:count], labels=tuple(range(count)),
                           classes=tuple(str(i) for i in range(count)))


def _cpu(batch_size: int, **overrides: object) -> PipelineConfig:
    return PipelineConfig(batch_size=batch_size, device="cpu", num_threads=2, crop_size=32,
                          resize_size=36, **overrides)


@pytest.mark.parametrize("num_shards", [1, 2, 3])
def test_eval_sees_every_sample_exactly_once(train_root: Path, num_shards: int) -> None:
    """23 samples, batch 4: every index once per epoch over all shards, two epochs running."""
    data = _indexed(train_root, 23)
    loaders = [make_loader(data, _cpu(4), train=False, shard_id=s, num_shards=num_shards)
               for s in range(num_shards)]
    for _epoch in range(2):
        seen: list[int] = []
        for loader in loaders:
            batches = [labels for _, labels in loader]
            assert len(batches) == len(loader)
            seen += torch.cat(batches).tolist()
        assert sorted(seen) == list(range(23))


def test_train_len_is_equal_on_every_rank(train_root: Path) -> None:
    """Uneven shards (11 and 12 samples) still give both ranks the same number of full batches."""
    data = _indexed(train_root, 23)
    loaders = [make_loader(data, _cpu(4), train=True, shard_id=s, num_shards=2) for s in range(2)]
    counts = [sum(1 for _ in loader) for loader in loaders]
    assert counts == [len(loaders[0]), len(loaders[1])] == [2, 2]
    seen = [label for loader in loaders for _, labels in loader for label in labels.tolist()]
    assert len(seen) == len(set(seen)) == 16  # disjoint shards, full batches only


def test_batch_larger_than_shard_is_refused(train_root: Path) -> None:
    """A training batch bigger than a shard would give empty epochs; the message says so."""
    data = _indexed(train_root, 10)
    with pytest.raises(ValueError, match=r"batch_size=16 is larger than a training shard \(10 samples\)"):
        make_loader(data, _cpu(16), train=True)


def test_gpu_without_cuda_is_refused(train_root: Path) -> None:
    """device='gpu' on a machine without CUDA fails at once, naming the fix."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present; the refusal only happens without one")
    with pytest.raises(RuntimeError, match="use device='cpu'"):
        make_loader(_indexed(train_root, 8), PipelineConfig(device="gpu", batch_size=4), train=False)


def test_checkpoint_resumes_the_exact_sequence(train_root: Path) -> None:
    """A loader restored from state() after 3 batches yields the batches the original would."""
    data = scan_image_folder(train_root)
    cfg = _cpu(8, seed=3)
    original = make_loader(data, cfg, train=True)
    stream = iter(original)
    for _ in range(3):
        next(stream)
    state = original.state()
    expected = [next(stream) for _ in range(len(original) - 3)]
    expected_next_epoch = next(iter(original))
    restored = make_loader(data, cfg, train=True, checkpoint=state)
    got = list(restored)
    assert len(got) == len(expected)
    for (images, labels), (want_images, want_labels) in zip(got, expected, strict=True):
        assert torch.equal(labels, want_labels) and torch.equal(images, want_images)
    next_epoch = next(iter(restored))
    assert torch.equal(next_epoch[0], expected_next_epoch[0])
