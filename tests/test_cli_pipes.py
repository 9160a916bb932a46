"""A command whose stdout reader went away (``| head``) ends with status 141 and says nothing:
every entry point, through a real pipe whose reading end is closed."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import pytest

from bench.cli import RESULTS_DIR
from bench.cli import main as bench_main
from dali_pipelines._util.pipes import EXIT_BROKEN_PIPE
from dali_pipelines.cli import main as tools_main
from train.cli import main as train_main


@pytest.mark.parametrize(("main", "argv"), [
    (bench_main, ["report", "--json", str(RESULTS_DIR)]),  # prints, then returns 0
    (train_main, ["--help"]),  # argparse prints, then SystemExit(0)
    (tools_main, ["make-sample", "--help"]),
], ids=["bench report", "train --help", "dali_pipelines --help"])
def test_a_closed_stdout_ends_the_command_quietly(main: Callable[[Sequence[str]], int], argv: list[str],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    with open(write_end, "w", encoding="utf-8") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(argv) == EXIT_BROKEN_PIPE
        print("left in the buffer", file=closed)
        closed.flush()  # as the interpreter does at exit: no second error
    assert capsys.readouterr().err == ""


def test_a_broken_pipe_of_the_command_itself_is_not_hidden() -> None:
    """Only a reader of stdout that went away is quiet; the command's own broken pipe propagates."""
    from dali_pipelines._util.pipes import quiet_broken_pipe

    @quiet_broken_pipe
    def writes_to_a_closed_pipe() -> int:
        read_end, write_end = os.pipe()
        os.close(read_end)
        with open(write_end, "wb", buffering=0) as pipe:
            pipe.write(b"x")
        return 0

    with pytest.raises(BrokenPipeError):
        writes_to_a_closed_pipe()
