"""Loader contract: exact-once eval over shards, len(), bad arguments, checkpoints, a fresh epoch
per for-loop, defaults shared with the training command, one seeded permutation on every rank,
the file lists DALI is handed."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from dali_pipelines import ImageFolderData, PipelineConfig, make_loader, scan_image_folder
from dali_pipelines.errors import DecoderFailedError
from dali_pipelines.reader_lists import reader_list, seeded_order


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


def test_every_rank_reads_one_seeded_permutation_from_one_list(train_root: Path) -> None:
    """Every rank is handed the same file list, in the seeded order, and DALI permutes it the same
    way on each: epoch 0 gives each of 2 ranks its half of the permutation a single rank reads,
    and a later epoch's reshuffle keeps the shards disjoint."""
    data = _indexed(train_root, 24)
    path, root = reader_list(data, seed=5)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    order = seeded_order(24, 5)
    assert root == str(data.root) and [int(line.rpartition(" ")[2]) for line in lines] == order
    relative = [os.path.relpath(data.files[i], data.root) for i in order]
    assert [line.rpartition(" ")[0] for line in lines] == relative
    whole = make_loader(data, _cpu(4, seed=5), train=True)
    permutation = [label for _, labels in whole for label in labels.tolist()]
    whole.close()
    loaders = [make_loader(data, _cpu(4, seed=5), train=True, shard_id=s, num_shards=2) for s in range(2)]
    epoch0 = [[label for _, labels in loader for label in labels.tolist()] for loader in loaders]
    assert sorted(permutation) == list(range(24)) and epoch0 == [permutation[:12], permutation[12:]]
    epoch1 = [{label for _, labels in loader for label in labels.tolist()} for loader in loaders]
    assert len(epoch1[0]) == len(epoch1[1]) == 12 and not epoch1[0] & epoch1[1]
    for loader in loaders:
        loader.close()


def test_reader_list_is_written_once_and_holds_any_path(train_root: Path, tmp_path: Path) -> None:
    """The same data and seed find the list already written; a file outside the data root is
    listed by its absolute path, and a name DALI's parser would split elsewhere reads intact."""
    data = _indexed(train_root, 6)
    odd = tmp_path / "elsewhere" / "photo 7.jpeg"  # outside the root, a space and digits in its name
    odd.parent.mkdir()
    shutil.copy(data.files[0], odd)
    data = ImageFolderData(root=data.root, files=(*data.files, str(odd)), labels=(*data.labels, 6),
                           classes=(*data.classes, "6"))
    first, _ = reader_list(data, seed=None, folder=tmp_path / "lists")
    inode = os.stat(first).st_ino
    again, _ = reader_list(data, seed=None, folder=tmp_path / "lists")
    assert again == first and os.stat(again).st_ino == inode  # found, not rewritten
    assert reader_list(data, seed=1, folder=tmp_path / "lists")[0] != first  # another order, another list
    assert f"{odd} 6" in Path(first).read_text(encoding="utf-8").splitlines()
    loader = make_loader(data, _cpu(7), train=False)
    assert sorted(label for _, labels in loader for label in labels.tolist()) == list(range(7))
    loader.close()


def test_each_for_is_a_fresh_epoch_after_a_break(train_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A loop broken off after one batch: the next for-loop is a whole epoch, the very one an unbroken
    loader gives second, without DALI's "does not support resetting" warning; the broken loop's
    iterator refuses to go on."""
    data = _indexed(train_root, 23)
    broken, unbroken = (make_loader(data, _cpu(4, seed=3), train=True) for _ in range(2))
    stale = iter(broken)
    next(stale)
    with caplog.at_level(logging.INFO):
        second = [labels for _, labels in broken]
    assert "does not support resetting" not in caplog.text and "(4 batches dropped)" in caplog.text
    for _ in unbroken:
        pass
    expected = [labels for _, labels in unbroken]
    assert len(second) == len(broken) == 5
    assert all(torch.equal(a, b) for a, b in zip(second, expected, strict=True))
    with pytest.raises(RuntimeError, match="given up for a later for-loop"):
        next(stale)


def test_eval_after_a_break_still_sees_every_sample_once(train_root: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Broken off after one batch, or stopped after len(loader) batches without the loop's end (as a
    trainer counting steps does): each next for-loop sees every sample exactly once."""
    data = _indexed(train_root, 23)
    loader = make_loader(data, _cpu(4), train=False, shard_id=1, num_shards=2)
    for _ in loader:
        break
    assert sorted(torch.cat([labels for _, labels in loader]).tolist()) == list(range(11, 23))
    counted = [labels for _, (_, labels) in zip(range(len(loader)), loader, strict=False)]
    assert sorted(torch.cat(counted).tolist()) == list(range(11, 23))
    with caplog.at_level(logging.WARNING):
        assert sorted(torch.cat([labels for _, labels in loader]).tolist()) == list(range(11, 23))
    assert "does not support resetting" not in caplog.text


def test_loader_names_its_classes_and_closes_as_a_context_manager(train_root: Path) -> None:
    data = scan_image_folder(train_root)
    with make_loader(data, _cpu(8), train=False) as loader:
        assert loader.classes == data.classes
        assert next(iter(loader))[1].max() < len(loader.classes)
    with pytest.raises(RuntimeError, match="this DaliLoader is closed"):
        iter(loader)


def test_a_file_dali_cannot_decode_names_the_fix(train_root: Path, tmp_path: Path) -> None:
    """Unverified data with a cut JPEG: the loader's error says what happened and to verify first."""
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(Path(scan_image_folder(train_root).files[0]).read_bytes()[:300])
    data = ImageFolderData(root=tmp_path, files=(str(cut),), labels=(0,), classes=("a",))
    with pytest.raises(DecoderFailedError, match=r"verify the data before making a loader, with prepare_"):
        list(make_loader(data, _cpu(1), train=False))


def test_library_defaults_are_the_training_commands() -> None:
    """Seed, and an eval resize that follows the crop by 256/224 unless given."""
    from train.config import TrainConfig

    cfg = PipelineConfig(device="cpu")
    run = TrainConfig(data="/data")
    assert cfg.seed == run.seed == 0
    for crop in (32, 112, 224, 299):
        assert PipelineConfig(device="cpu", crop_size=crop).resize_size == TrainConfig(
            data="/data", image_size=crop).resize_size
    assert cfg.replace(crop_size=112).resize_size == 128
    given = PipelineConfig(device="cpu", crop_size=112, resize_size=160)
    assert given.replace(crop_size=96).resize_size == 160 and given.replace(seed=1).resize_size == 160
