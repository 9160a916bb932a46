"""``python -m dali_pipelines``: the data set tools' sub-commands, each defined beside its work
(``sources.cli``: make-sample, to-shards; ``verify.cli``: verify; ``tune.cli``: tune); here they are
dispatched."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dali_pipelines._util.pipes import quiet_broken_pipe
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.cli import add_make_sample_command, add_to_shards_command
from dali_pipelines.tune.cli import add_tune_command
from dali_pipelines.verify.cli import add_verify_command

_EXAMPLES = """examples:
  python -m dali_pipelines make-sample data/sample
  python -m dali_pipelines verify data/sample --clean-list clean.txt
  python -m dali_pipelines to-shards data/sample data/sample-wds
  python -m dali_pipelines tune data/sample --model googlenet --seconds 60"""


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m dali_pipelines`` parser, reusable by other tools; each command's ``run``
    default is the function that carries it out."""
    parser = argparse.ArgumentParser(
        prog="python -m dali_pipelines", description="Data set tools for the DALI pipelines: make a "
        "sample data set, verify images before training, convert an ImageFolder to WebDataset shards, "
        "tune a loader's settings on this machine.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands (each has --help)")
    add_make_sample_command(commands)
    add_verify_command(commands)
    add_to_shards_command(commands)
    add_tune_command(commands)
    return parser


@quiet_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dali_pipelines`` and the ``dali-pipelines`` script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout's reader went away: quiet_broken_pipe ends the command
        raise
    except OSError as err:  # one line naming the path, not a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror or err}{where}; check the path and its permissions", file=sys.stderr)
        return 2
