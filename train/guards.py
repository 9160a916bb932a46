"""What stops a run that can no longer go on correctly, before anything wrong is saved.

Three kinds of failure halt training with one line that says what happened, which checkpoint is
the last good one, and the command that continues once the cause is fixed:

- a loss or weight that is not finite (``NonFiniteError``): checked at every log step (the loss)
  and before every save (the loss and every weight), never per step, so no step waits for the
  device; a save that would hold NaN or inf is not written;
- the data can no longer be read (``DataReadError``): any exception a loader raises while an
  epoch runs (a deleted or unreadable file, a bucket that stopped answering); the loader's own
  one line is kept (``BucketReadError`` names the endpoint and object), or what DALI's
  multi-paragraph text names (the file);
- the run directory cannot be written (``RunWriteError``): a full disk, a lost mount, a
  permission changed; a checkpoint that fails to save leaves its temporary removed and the
  checkpoints before it as they were.

The choice on a non-finite loss is to stop, not to skip the step: a loss that went NaN once does
so again on the same batches, and a skipped step would change the run without a record of it.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dali_pipelines import DatasetError
from train.checkpoint import LAST
from train.distributed import all_reduce_sum
from train.model import bare_model
from train.resume import resume_command
from train.run import Run
from train.trainer import Trainer

# DALI's "Critical error in pipeline" text: the operator's own message sits after "encountered:".
_DALI_REASON = re.compile(r"encountered:\s*(.+?)\s*(?:C\+\+ context|Current pipeline object|$)", re.DOTALL)


class TrainingHaltedError(RuntimeError):
    """Training stopped because it could not go on correctly; ``report`` says how to go on."""

    every_rank = False  # True: the rank that meets it reports it (the others may never see it)

    def next_step(self, resume: str | None) -> str:
        """What to do once the cause is fixed, given the resume command (None: nothing was saved)."""
        return f"then resume with: {resume}" if resume else "then start the run again with --overwrite"


class NonFiniteError(TrainingHaltedError):
    """A loss or weight became NaN or infinite: the run diverged."""

    def __init__(self, reason: str, lr: float) -> None:
        super().__init__(reason)
        self.lr = lr

    def next_step(self, resume: str | None) -> str:
        return (f"a resume would repeat the same steps, so start a new run with a lower --lr (this run's: "
                f"{self.lr:g} per 256 images) with --overwrite or another --out")


class DataReadError(TrainingHaltedError):
    """A loader raised while an epoch ran: the data (or its storage) is not what set-up found."""

    every_rank = True

    def next_step(self, resume: str | None) -> str:
        return f"restore the data (or its storage), {super().next_step(resume)}"


class RunWriteError(TrainingHaltedError):
    """A record or checkpoint could not be written into the run directory."""

    def __init__(self, reason: str, folder: Path, *, full: bool) -> None:
        super().__init__(reason)
        self.folder, self.full = folder, full

    def next_step(self, resume: str | None) -> str:
        fix = f"free space in {self.folder}" if self.full else f"make {self.folder} writable"
        elsewhere = " (add --out DIR to continue in another folder)" if resume else ""
        return f"{fix}, {super().next_step(resume)}{elsewhere}"


@dataclass
class LastGood:
    """The newest checkpoint this run wrote whole, or resumed from: what a halted run names."""

    path: Path | None = None
    step: int = 0

    def describe(self) -> str:
        if self.path is None:
            return "this run saved no checkpoint before"
        return f"the last good checkpoint, {self.path} (step {self.step}), is kept as it was"


class Guard:
    """The checks around one run's steps, loaders and saves (see the module's docstring)."""

    def __init__(self, state: Run, last_good: LastGood) -> None:
        self.state = state
        self.last_good = last_good
        # While last.pt is being saved: what it will hold, and the inode it had before (None: no
        # file). A second signal can land between the rename and the return (see ``kept``).
        self._saving: tuple[LastGood, int | None] | None = None

    # --- the loaders

    def batches(self, loader: Any, what: str) -> ReadGuarded:
        """``loader`` with every failure while iterating it raised as a DataReadError."""
        return ReadGuarded(loader, what, self.state)

    # --- the numbers

    def check_loss(self) -> None:
        """At a log step: stop if any loss of this epoch so far was not finite (one device sync)."""
        self._check(weights=False)

    def _check(self, *, weights: bool) -> None:
        trainer, ctx = self.state.trainer, self.state.ctx
        loss_bad, weights_bad = all_reduce_sum(_non_finite(trainer, weights=weights), trainer.device, ctx)
        if not (loss_bad or weights_bad):
            return
        step = self.state.progress.step
        if loss_bad:
            value = trainer.meter.loss_sum.item() if trainer.meter is not None else float("nan")
            what = f"the training loss became {'nan' if math.isnan(value) else 'infinite'} by step {step}"
        else:
            what = f"the weights became NaN or infinite at step {step} (the loss was still finite)"
        raise NonFiniteError(f"{what}: the run diverged, and no checkpoint of it was written",
                             self.state.cfg.lr)

    # --- the files

    def save(self, name: str) -> Path:
        """Checkpoint ``name`` after checking that the loss and weights are finite; a write
        failure becomes a RunWriteError and leaves the earlier checkpoints as they were."""
        self._check(weights=True)
        target = self.state.checkpoint_dir / f"{name}.pt"
        if target.name == LAST:
            self._saving = (LastGood(target, self.state.progress.step), _inode(target))
        try:
            with writes_into(self.state.checkpoint_dir):
                path = self.state.save_checkpoint(name)
            if path.name == LAST:
                self.last_good = LastGood(path, self.state.progress.step)
        finally:
            self._saving = None
        return path

    def writes(self) -> AbstractContextManager[None]:
        """Around the epochs: a record (CSV, TensorBoard) that cannot be written is a RunWriteError."""
        return writes_into(self.state.out)

    def kept(self) -> str:
        """What a run stopped now would leave, and how to continue it (called from a signal
        handler, at any point of a save)."""
        good = self.last_good
        saving = self._saving
        if saving is not None and _inode(saving[0].path) != saving[1]:
            good = saving[0]  # the rename is done: last.pt is the new, whole file
        if good.path is None:
            return "no checkpoint of this run was saved yet"
        resume = resume_command(good.path, self.state.ctx)
        return f"{good.path} (step {good.step}) is kept; resume with: {resume}"

    def report(self, err: TrainingHaltedError) -> str:
        """The one line a halted run prints: what happened, what was kept, what to do."""
        ctx = self.state.ctx
        resume = resume_command(self.last_good.path, ctx) if self.last_good.path else None
        where = f"(rank {ctx.rank}) " if ctx.enabled and not ctx.is_main else ""
        return f"error: {where}{err}; {self.last_good.describe()}; {err.next_step(resume)}"

    def halt(self, err: TrainingHaltedError) -> int:
        """Print ``report(err)`` on the rank that speaks for it; the exit code of a halted run."""
        if self.state.ctx.is_main or err.every_rank:
            print(self.report(err), file=sys.stderr, flush=True)
        return 2


def _inode(path: Path | None) -> int | None:
    """``path``'s inode number, None when there is no such file."""
    try:
        return os.stat(path).st_ino if path is not None else None
    except FileNotFoundError:
        return None


def _non_finite(trainer: Trainer, *, weights: bool) -> list[float]:
    """[loss not finite, weights not finite] as 0/1, read from the device in one sync.

    The epoch's running loss sum is the loss flag: NaN and inf (CE losses are never negative)
    survive every later addition, so it holds every step's verdict without a per-step check.
    """
    none = torch.zeros((), dtype=torch.bool, device=trainer.device)
    meter = trainer.meter  # the optimized loss: the main head's sum and the aux heads' share
    loss_bad = ~torch.isfinite(meter.loss_sum + meter.aux_sum) if meter is not None else none
    weights_bad = none
    if weights:
        model = bare_model(trainer.model)
        tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
        weights_bad = ~torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    return [float(flag) for flag in torch.stack([loss_bad, weights_bad]).tolist()]


class ReadGuarded:
    """A loader whose every failure mid-epoch (building an epoch's iterator or any batch) raises a
    DataReadError in one line; the loader's own exception stays attached as its cause."""

    def __init__(self, loader: Any, what: str, state: Run) -> None:
        self.loader, self.what, self.state = loader, what, state

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        try:
            batches = iter(self.loader)
        except Exception as err:  # whatever the loader raises: the data cannot be read
            raise self._failure(err) from err
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as err:
                raise self._failure(err) from err
            yield batch

    def _failure(self, err: BaseException) -> DataReadError:
        p = self.state.progress
        return DataReadError(f"the {self.what} data can no longer be read (epoch {p.epoch}, after step "
                             f"{p.step}): {read_failure(err)}")


def read_failure(err: BaseException) -> str:
    """One line for a loader's exception: a DatasetError's own message (the loader's translation
    of a bucket's failed read, a bad shard sample, a file DALI cannot decode), the operator
    message of DALI's "Critical error in pipeline" text (which names the file), or the first line
    of anything else."""
    if isinstance(err, DatasetError):
        return str(err)
    text = str(err)
    found = _DALI_REASON.search(text)
    if found:
        return " ".join(found.group(1).split())
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: itself, or one in its chain (torch's writer wraps it)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def writes_into(folder: Path) -> Iterator[None]:
    """Turn a failed write into ``folder`` (an OSError, or torch's error wrapping one) into a
    RunWriteError that names the folder, the reason and the free space."""
    try:
        yield
    except TrainingHaltedError:
        raise
    except Exception as err:
        cause = _os_error_in(err)
        if cause is None:
            raise
        full = cause.errno in (errno.ENOSPC, errno.EDQUOT)
        try:
            free = f", {shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
        except OSError:
            free = ""
        raise RunWriteError(f"cannot write to {folder} ({cause.strerror}{free})", folder, full=full) from err


def close_records(close: Callable[[], None], folder: Path) -> None:
    """Close the run's records; a failure to flush them (a full disk) is one warning line, not a
    second traceback: their rows were already flushed one by one."""
    try:
        close()
    except OSError as err:
        print(f"warning: the records in {folder} could not be flushed at exit ({err.strerror})",
              file=sys.stderr, flush=True)


def resumed_from(checkpoint: str | None, payload: dict[str, Any] | None) -> LastGood:
    """The last good checkpoint before this process saved one: the checkpoint it resumed from."""
    if checkpoint is None or payload is None:
        return LastGood()
    return LastGood(Path(checkpoint), int(payload["step"]))

