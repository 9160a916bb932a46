"""Run records: TensorBoard events written without TensorFlow's start-up."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter: the test process may have imported TensorFlow already (tfdata tests).
WRITE_AND_READ = """
import json, sys
from pathlib import Path
from train.metrics import MetricsLog
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = Path(sys.argv[1])
log = MetricsLog(run, enabled=True)
log.step({"step": 1, "epoch": 0, "loss": 2.5, "lr": 0.1, "data_ms": 1.0, "compute_ms": 2.0,
          "images_per_s": 9.0})
log.epoch({"epoch": 0, "step": 1, "train_loss": 2.5, "val_top1": 0.25})
log.close()
events = EventAccumulator(str(run / "tensorboard"))
events.Reload()
print(json.dumps({"tensorflow": "tensorflow" in sys.modules,
                  "loss": [e.value for e in events.Scalars("step/loss")],
                  "top1": [e.value for e in events.Scalars("epoch/val_top1")]}))
"""


def test_tensorboard_events_are_written_without_importing_tensorflow(tmp_path: Path) -> None:
    """Where the `tf` extra installs TensorFlow, the writer still takes TensorBoard's stub: the
    scalars read back, and TensorFlow was never imported (seconds of every run's start-up)."""
    done = subprocess.run([sys.executable, "-c", WRITE_AND_READ, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"tensorflow": False, "loss": [2.5], "top1": [0.25]}
