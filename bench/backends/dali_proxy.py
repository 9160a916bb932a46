"""``dali-proxy``: this project's graphs in a DALI server, fed by a PyTorch DataLoader through DALI's proxy.

For users who keep their own ``Dataset`` and ``DataLoader``: ``nvidia.dali.plugin.pytorch.
experimental.proxy`` runs one DALI pipeline in the main process (``DALIServer``); the Dataset
returns ``server.proxy(path)`` in place of an image, the DataLoader workers collate those
references and hand each batch to the server, and ``server.produce_data`` swaps the references
for the pipeline's outputs. The pipeline is the one ``dali-cpu`` / ``dali-gpu`` run (the library's
``train_images`` / ``eval_images`` and the benchmark's ``resize_images``) with the reader
replaced by an external source of file names and ``fn.io.file.read``, as in DALI's proxy
example. The workers only look up names, so one worker keeps the server fed; ``spec.workers``
is the server's DALI thread count. On ``--device gpu`` the graph decodes with nvJPEG and the
batches come out on the GPU, in the main process (no CUDA context in any worker).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def
from nvidia.dali.pipeline import DataNode
from nvidia.dali.plugin.pytorch.experimental import proxy
from torch.utils.data import DataLoader, Dataset

from bench.backends import RunSpec
from bench.backends.dali import config_for, resize_images
from bench.measure import Batch
from dali_pipelines import ImageFolderData, PipelineConfig
from dali_pipelines.graphs import eval_images, train_images

PROXY_WORKERS = 1  # DataLoader processes: each turns an index into a file name, nothing more
PATHS = "paths"  # the pipeline's external source, the proxy call's one argument
IDLE_POLL_S = 0.1  # the server thread's wait for work before it checks for a stop request


# train-aug's policy picks operations per sample (``if`` on DataNodes): conditionals on, as in
# the library's train graph; the workload test below is plain Python, decided at build time.
@pipeline_def(enable_conditionals=True)
def proxy_graph(workload: str, cfg: PipelineConfig) -> DataNode:
    """File names from the proxy -> file read -> the workload's part of this project's graphs."""
    jpegs = fn.io.file.read(fn.external_source(name=PATHS, no_copy=True))
    if workload == "resize":
        return resize_images(jpegs, cfg)
    if workload == "eval":
        return eval_images(jpegs, cfg)
    return train_images(jpegs, cfg)


class PromptServer(proxy.DALIServer):
    """``DALIServer`` whose feeding thread notices a stop request within a tenth of a second.

    The stock thread waits up to 5 s on its idle input queue before it looks at the stop flag,
    so closing a loader (a benchmark job, each test) would sit that long. Only that wait is
    shortened; the thread, the queues and the pipeline runs are DALI's.
    """

    def _get_input_batches(self, max_num_batches: int, timeout: float | None = None) -> list | None:
        wait = None if timeout is None else min(timeout, IDLE_POLL_S)
        return super()._get_input_batches(max_num_batches, wait)


def encode_path(path: str) -> np.ndarray:
    """A file name as the int8 array ``fn.io.file.read`` takes (DALI's proxy example's encoding)."""
    return np.frombuffer(path.encode(), dtype=np.int8)


class ProxiedFiles(Dataset):
    """(proxy reference to the decoded image, label) per index: a user's Dataset, DALI's work."""

    def __init__(self, data: ImageFolderData, server: proxy.DALIServer) -> None:
        self.samples = data.samples
        self.proxy = server.proxy

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        path, label = self.samples[index]
        return self.proxy(encode_path(path)), label


class ProxyBatches:
    """A DataLoader over ``ProxiedFiles`` and the server that fills its batches; ``iter()`` is an epoch.

    A plain ``torch.utils.data.DataLoader`` with ``server.produce_data`` on each batch (the
    proxy's documented use with an unmodified DataLoader): ``proxy.DataLoader`` does the same but
    keeps a reference cycle with its iterator, which would keep the pipeline alive in garbage that
    a later forked process could collect, running DALI's destructor where its threads do not exist.
    The server's thread stops when this object is collected.
    """

    def __init__(self, data: ImageFolderData, spec: RunSpec) -> None:
        cfg = config_for(spec, spec.device)
        pipe = proxy_graph(spec.workload, cfg, batch_size=cfg.batch_size, num_threads=cfg.num_threads,
                           device_id=cfg.device_id if cfg.device == "gpu" else None, seed=cfg.seed,
                           prefetch_queue_depth=cfg.prefetch_queue_depth)
        self.server = PromptServer(pipe)
        self.server.start_thread()
        weakref.finalize(self, self.server.stop_thread)
        self.device = spec.torch_device
        self.batches = math.ceil(len(data) / spec.batch_size)
        self.loader = DataLoader(
            ProxiedFiles(data, self.server), batch_size=spec.batch_size, shuffle=spec.train,
            num_workers=PROXY_WORKERS, persistent_workers=True, prefetch_factor=2,
            generator=torch.Generator().manual_seed(spec.seed),
            multiprocessing_context="fork")  # as torch_loader's workers, for the same reasons

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            images, labels = self.server.produce_data(batch)
            yield images, labels.to(self.device, non_blocking=True)


def make_batches(data: ImageFolderData, spec: RunSpec) -> ProxyBatches:
    """Batches of ``spec.workload`` from the server's graph on ``spec.device`` ("mixed" decode on gpu)."""
    if spec.device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("backend dali-proxy with --device gpu needs a CUDA GPU")
    return ProxyBatches(data, spec)
