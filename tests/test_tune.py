"""The tuner on the CPU path: real DALI loaders (and a real GoogLeNet step) on the sample photos, the
record it writes, and the store of saved tunings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dali_pipelines import PipelineConfig, scan_image_folder
from dali_pipelines.cli import main
from dali_pipelines.tune import (
    MeasureSpec,
    TuneKey,
    TuneResult,
    TuneStore,
    load_or_tune,
    pipeline_space,
    tune,
)
from dali_pipelines.tune.scorers import AUX_WEIGHTS, build_classifier, classifier_loss

# Short measurements: the figures are not compared with anything, only their plumbing is checked.
QUICK = MeasureSpec(warmup_s=0.0, warmup_batches=1, repeat_s=0.0, repeat_batches=2, repeats=2)


@pytest.fixture(scope="module")
def base() -> PipelineConfig:
    return PipelineConfig(device="cpu", batch_size=8, crop_size=32, resize_size=37, num_threads=2)


@pytest.mark.slow
def test_a_short_cpu_grid_returns_valid_settings_and_saves_its_record(train_root: Path, base: PipelineConfig,
                                                                     tmp_path: Path) -> None:
    source = scan_image_folder(train_root)
    space = pipeline_space(base, threads=[1, 2], prefetch=[1, 2])
    store = TuneStore(tmp_path)
    result = tune(source, base, seconds=30, method="grid", space=space, spec=QUICK, store=store)

    assert result.trials[0]["point"] == result.defaults == {"num_threads": 2, "prefetch_queue_depth": 2}
    assert all(space.contains(t["point"]) for t in result.trials)
    explored = [json.dumps(t["point"]) for t in result.trials if t["phase"] == "explore"]
    assert len(set(explored)) == len(explored) <= space.size
    assert all(t["images_per_s"] > 0 and t["low"] <= t["images_per_s"] <= t["high"] for t in result.trials)
    rates = result.images_per_s
    assert result.settings == result.defaults or rates["chosen"] > rates["defaults"] * 1.02
    assert rates["best"] >= rates["chosen"] >= rates["defaults"]
    assert result.apply(base).num_threads == result.settings["num_threads"]  # PipelineConfig accepts them

    assert result.path is not None and result.path.parent == tmp_path
    saved = TuneResult.from_record(json.loads(result.path.read_text()))
    assert saved.settings == result.settings and saved.trials == result.trials and saved.key == result.key
    reused = load_or_tune(source, base, store=store, seconds=30, space=space)  # same key: nothing measured
    assert reused.reused and reused.settings == result.settings and reused.created == result.created
    assert TuneKey.of(source, base, model=None).digest() != result.key.digest()  # another space, another key


@pytest.mark.slow
def test_a_training_step_scores_the_loader_that_feeds_it(train_root: Path, base: PipelineConfig) -> None:
    # SqueezeNet: the same TrainingStep as GoogLeNet's at a fraction of its first step's CPU cost.
    source = scan_image_folder(train_root)
    one_point = pipeline_space(base, threads=[2], prefetch=[2])
    tiny = MeasureSpec(warmup_s=0.0, warmup_batches=1, repeat_s=0.0, repeat_batches=1, repeats=1)
    result = tune(source, base.replace(batch_size=4), model="squeezenet1_1", seconds=1, space=one_point,
                  spec=tiny)
    assert result.metric == "images/s of squeezenet1_1 training steps fed by the loader"
    assert result.key.model == "squeezenet1_1" and result.path is None  # no store given: nothing saved
    (trial,) = result.trials
    assert trial["images_per_s"] > 0 and 0.0 <= trial["detail"]["data_wait_frac"] <= 1.0
    assert result.settings == result.defaults == {"num_threads": 2, "prefetch_queue_depth": 2}


def test_googlenet_is_built_with_aux_heads_and_its_loss_weighs_them_as_the_paper() -> None:
    model = build_classifier("googlenet", num_classes=8).train()
    targets = torch.tensor([1, 5])
    criterion = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 64))
        loss = classifier_loss(outputs, targets, criterion, AUX_WEIGHTS["googlenet"])
        heads = [criterion(logits, targets) for logits in outputs]  # logits, aux2, aux1
    assert len(heads) == 3 and AUX_WEIGHTS["googlenet"] == 0.3
    assert torch.allclose(loss, heads[0] + 0.3 * (heads[1] + heads[2]))


def test_the_tune_command_prints_the_points_and_writes_the_settings(
        sample_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tuned.json"
    status = main(["tune", str(sample_root), "--device", "cpu", "--batch-size", "8", "--image-size", "32",
                   "--seconds", "2", "--threads", "1,2", "--prefetch", "2", "--warmup-s", "0",
                   "--repeat-s", "0", "--repeats", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    record = json.loads(out.read_text())
    assert record["metric"] == "images/s of the loader alone"
    assert record["key"]["model"] is None and record["key"]["data"]["samples"] == 72  # train/ only
    assert record["settings"]["num_threads"] in (1, 2) and record["settings"]["prefetch_queue_depth"] == 2
    assert record["trials"][0]["point"] == record["defaults"] == {"num_threads": 2, "prefetch_queue_depth": 2}
    assert "threads  prefetch  images/s" in printed and "chosen: num_threads=" in printed
    saved = Path(printed.split("saved: ")[1].split()[0])  # in the test session's cache folder
    assert json.loads(saved.read_text())["settings"] == record["settings"]


def test_the_store_keeps_one_record_per_key_and_ignores_others(train_root: Path, base: PipelineConfig,
                                                                 tmp_path: Path) -> None:
    source = scan_image_folder(train_root)
    store = TuneStore(tmp_path)
    key = TuneKey.of(source, base, model="googlenet")
    assert store.load(key) is None
    path = store.save(key, {"settings": {"num_threads": 1}})
    assert store.load(key)["settings"] == {"num_threads": 1}
    assert key.machine["cores"] >= 1 and key.machine["gpu"] is None and key.amp is None  # CPU: no amp

    others = [TuneKey.of(source, base, model=None),
              TuneKey.of(source, base.replace(batch_size=16), model="googlenet"),
              TuneKey.of(source.subset(range(len(source) - 1)), base, model="googlenet")]
    for other in others:
        assert other.digest() != key.digest() and store.load(other) is None

    path.write_text("{not json", encoding="utf-8")
    assert store.load(key) is None  # unreadable: tuned again, with a warning
    path.write_text(json.dumps({"version": 0, "key": key.to_dict()}), encoding="utf-8")
    assert store.load(key) is None


def test_bad_arguments_are_refused_before_any_work(train_root: Path, base: PipelineConfig) -> None:
    source = scan_image_folder(train_root)
    with pytest.raises(ValueError, match="not a torchvision classification model"):
        tune(source, base, model="googlenet_v9")
    with pytest.raises(ValueError, match="method must be one of hill, grid"):
        tune(source, base, method="random")
    with pytest.raises(ValueError, match="searched on the GPU only"):
        pipeline_space(base, hw_decoder_loads=[0.5])
    with pytest.raises(ValueError, match=r"prefetch_queue_depth must be in \[1, 32\]"):
        pipeline_space(base, prefetch=[0, 2])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_a_gpu_tuning_without_a_gpu_is_refused_first(train_root: Path, base: PipelineConfig) -> None:
    with pytest.raises(ValueError, match="needs a CUDA GPU and none is visible"):
        tune(scan_image_folder(train_root), base.replace(device="gpu"))


def test_the_gpu_space_adds_the_decoder_share_and_dtype_and_keeps_the_defaults() -> None:
    gpu = PipelineConfig(device="gpu", num_threads=5, prefetch_queue_depth=2, hw_decoder_load=0.65)
    space = pipeline_space(gpu, cores=16)
    values = {d.name: d.values for d in space.dimensions}
    assert values == {"num_threads": (1, 2, 3, 4, 5, 6, 8, 12, 16), "prefetch_queue_depth": (1, 2, 3, 4),
                      "hw_decoder_load": (0.0, 0.25, 0.5, 0.65, 0.75, 1.0), "dtype": ("float32", "float16")}
    assert space.defaults() == {"num_threads": 5, "prefetch_queue_depth": 2, "hw_decoder_load": 0.65,
                                "dtype": "float32"}
    assert pipeline_space(gpu, cores=2, half_ok=False).names == (
        "num_threads", "prefetch_queue_depth", "hw_decoder_load")  # a model without autocast: no float16
    assert pipeline_space(gpu.replace(device="cpu"), cores=2).names == ("num_threads", "prefetch_queue_depth")
