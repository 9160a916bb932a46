"""``PipelineConfig(num_threads="auto")``: a saved tuning's speed settings or the defaults, resolved
when a loader is made, and never handed to DALI unresolved. Real DALI loaders on the sample photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dali_pipelines import DaliLoader, PipelineConfig, build_pipeline, make_loader, scan_image_folder
from dali_pipelines.config import default_num_threads
from dali_pipelines.tune import TuneKey, TuneStore, resolve_auto

AUTO = PipelineConfig(device="cpu", batch_size=6, crop_size=32, resize_size=37, num_threads="auto")


def test_auto_is_a_value_of_its_own_and_stays_json_ready() -> None:
    assert AUTO.auto and AUTO.num_threads == "auto" and not AUTO.replace(num_threads=3).auto
    assert json.loads(json.dumps(AUTO.to_dict()))["num_threads"] == "auto"
    with pytest.raises(ValueError, match=r"num_threads must be 'auto' or an integer in \[1, 1024\], got 'x'"):
        PipelineConfig(num_threads="x")


def test_an_unresolved_auto_never_reaches_dali(train_root: Path) -> None:
    source = scan_image_folder(train_root)
    with pytest.raises(ValueError, match="num_threads='auto' is resolved when a loader is made"):
        build_pipeline(source, AUTO, train=True)
    with pytest.raises(ValueError, match="use make_loader"):
        DaliLoader(source, AUTO, train=True)


def test_make_loader_takes_the_saved_tuning_or_the_defaults(train_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DALI_PIPELINES_CACHE", str(tmp_path))  # an empty store of saved tunings
    source = scan_image_folder(train_root)
    with caplog.at_level(logging.INFO, logger="dali_pipelines.tune.auto"):
        loader = make_loader(source, AUTO, train=True)
    assert loader.cfg.num_threads == default_num_threads("cpu") and loader.cfg.prefetch_queue_depth == 2
    loader.close()
    assert "no saved tuning" in caplog.text
    command = f"python -m dali_pipelines tune {train_root} --device cpu --batch-size 6 --image-size 32"
    assert command in caplog.text

    key = TuneKey.of(source, AUTO.replace(num_threads=None), model=None)
    TuneStore().save(key, {"settings": {"num_threads": 1, "prefetch_queue_depth": 3, "dtype": "float16"}})
    loader = make_loader(source, AUTO, train=True)
    images, labels = next(iter(loader))
    loader.close()
    # The tuned speed settings; the dtype stays the config's (what batches hold is not "auto").
    assert (loader.cfg.num_threads, loader.cfg.prefetch_queue_depth, loader.cfg.dtype) == (1, 3, "float32")
    assert images.shape == (6, 3, 32, 32) and labels.shape == (6,)
    # Another workload (the eval graph) has no saved tuning: the defaults again.
    untuned = resolve_auto(source, AUTO, train=False, store=TuneStore())
    assert untuned.num_threads == default_num_threads("cpu")
