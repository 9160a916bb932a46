"""Native per-sample log lines: once each with a count, while everything else still gets through.

The warning source on the CPU: a JPEG with a few bytes of its entropy-coded data overwritten.
libjpeg-turbo still decodes it and warns "Corrupt JPEG data: N extraneous bytes before marker
0xd9" on fd 2, once per decode, in DALI's CPU decoder as in PIL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from jpeg_kinds import jpeg, photo

from dali_pipelines._util.native_stderr import NATIVE_LOG_ENV, collapse_native_logs, native_stderr
from dali_pipelines._util.stderr_relay import Relay, native_kind

ROOT = Path(__file__).parents[1]
WARNING = "Corrupt JPEG data: "
SUMMARY = re.compile(r"dali_pipelines: native log line written (\d+) times in all, shown once: (.*)")


def stray_bytes_jpeg() -> bytes:
    """A decodable JPEG with 8 bytes of its entropy-coded data overwritten (no 0xFF: no marker)."""
    content = bytearray(jpeg(photo(160, 120)))
    scan_header = content.index(b"\xff\xda") + 2  # start of scan: 2 length bytes, then the header
    start = scan_header + int.from_bytes(content[scan_header:scan_header + 2], "big")
    middle = (start + len(content) - 2) // 2
    content[middle:middle + 8] = b"\x5a" * 8
    return bytes(content)


def test_dali_cpu_decoder_warns_once_per_decode() -> None:
    """The premise: DALI's CPU decoder writes the warning to fd 2 for every decode of the file."""
    import nvidia.dali.experimental.dynamic as ndd
    from nvidia.dali import types

    encoded = ndd.as_tensor(np.frombuffer(stray_bytes_jpeg(), dtype=np.uint8))
    log: list[str] = []
    with native_stderr(log):
        for _ in range(3):
            ndd.decoders.image(encoded, device="cpu", output_type=types.RGB)
    assert "".join(log).count(WARNING) == 3


def _run(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter; stdout and stderr as text, "\\r" kept as written."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, check=False,
                          cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), NATIVE_LOG_ENV: "collapse", **env})
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def test_loader_shows_native_warning_once_with_count(tmp_path: Path) -> None:
    """A loader over 6 such files for 4 epochs: the warning is shown once, then one summary line
    with the count; a Python traceback, a progress line and other native lines pass untouched."""
    for index in range(6):
        (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "a" / f"{index}.jpg").write_bytes(stray_bytes_jpeg())
    done = _run("""
        import os, sys, time
        from dali_pipelines import PipelineConfig, make_loader, scan_image_folder
        cfg = PipelineConfig(batch_size=3, device="cpu", num_threads=2, crop_size=32, resize_size=36)
        loader = make_loader(scan_image_folder("data"), cfg, train=False)
        batches = sum(1 for _ in range(4) for _ in loader)
        print(batches * 3, cfg.prefetch_queue_depth * 3)
        sys.stderr.write("progress 50%\\r"); sys.stderr.flush(); time.sleep(0.2)
        sys.stderr.write("progress 100%\\n")
        os.write(2, b"some other native line\\n")
        raise RuntimeError("the end of the script")
    """, tmp_path)
    assert done.returncode == 1, done.stderr
    decoded, prefetched = map(int, done.stdout.split())
    lines = done.stderr.splitlines()
    shown = [line for line in lines if line.startswith(WARNING)]
    assert len(shown) == 1 and shown[0].endswith("extraneous bytes before marker 0xd9")
    summaries = [SUMMARY.search(line) for line in lines if SUMMARY.search(line)]
    assert len(summaries) == 1 and summaries[0].group(2).startswith(WARNING)
    assert decoded <= int(summaries[0].group(1)) <= decoded + prefetched  # DALI decodes ahead
    assert "progress 50%\rprogress 100%" in done.stderr
    assert "some other native line" in lines
    assert "RuntimeError: the end of the script" in lines
    assert lines.index("RuntimeError: the end of the script") < lines.index(summaries[0].group(0))


def test_crash_output_arrives_and_capture_still_works(tmp_path: Path) -> None:
    """After os.abort() the relay still delivers the last native words and its summary (labelled with
    the rank under a launcher); native_stderr() captures inside the relay and hands fd 2 back."""
    relay_module = ROOT / "dali_pipelines" / "_util" / "native_stderr.py"
    done = _run(f"""
        import importlib.util, os
        spec = importlib.util.spec_from_file_location("native_stderr", {str(relay_module)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # without importing DALI: this test is about fd 2 only
        assert module.collapse_native_logs()
        captured = []
        with module.native_stderr(captured):
            os.write(2, b"captured, not shown\\n")
        print("captured" if captured == ["captured, not shown\\n"] else captured, flush=True)
        for _ in range(3):
            os.write(2, b"\\x1b[0;33m[WARNING] \\x1b[0m[nvjpeg_cuda_decoder] ROI decode with fancy\\n")
        os.write(2, b"terminate called after throwing an instance of 'dali::CriticalError'\\n")
        os.abort()
    """, tmp_path, WORLD_SIZE="2", RANK="1")
    assert done.returncode == -6  # SIGABRT
    assert done.stdout == "captured\n"
    lines = done.stderr.splitlines()
    assert "captured, not shown" not in done.stderr
    assert lines[0].endswith("[nvjpeg_cuda_decoder] ROI decode with fancy")
    assert lines[1] == "terminate called after throwing an instance of 'dali::CriticalError'"
    assert lines[2].startswith("[rank 1] dali_pipelines: native log line written 3 times in all")


def test_relay_lines() -> None:
    """What counts as a native per-sample line, and how repeats are keyed (numbers ignored)."""
    out: list[bytes] = []
    relay = Relay(out.append)
    for raw in (b"\x1b[0;31m[ERROR] \x1b[0m[libjpeg_turbo_decoder] Could not decode: line 30/120\n",
                b"[ERROR] [libjpeg_turbo_decoder] Could not decode: line 7/64\n",
                b"Corrupt JPEG data: 2 extraneous bytes before marker 0xd9\n",
                b"Corrupt JPEG data: 9 extraneous bytes before marker 0xd8\n",
                b"Premature end of JPEG file\n",
                b"Premature end of JPEG file\n",
                b"Epoch 1: loss 2.0\n", b"Epoch 1: loss 2.0\n", b"Traceback (most recent call last):\n"):
        relay.line(raw)
    relay.summary()
    assert out[:6] == [b"\x1b[0;31m[ERROR] \x1b[0m[libjpeg_turbo_decoder] Could not decode: line 30/120\n",
                       b"Corrupt JPEG data: 2 extraneous bytes before marker 0xd9\n",
                       b"Premature end of JPEG file\n",
                       b"Epoch 1: loss 2.0\n", b"Epoch 1: loss 2.0\n",
                       b"Traceback (most recent call last):\n"]
    assert [SUMMARY.search(line.decode()).group(1) for line in out[6:]] == ["2", "2", "2"]
    assert native_kind("Traceback (most recent call last):") is None
    assert native_kind("[INFO] [nvjpeg] batch of 3") == ("[INFO] [nvjpeg] batch of #",
                                                         "[INFO] [nvjpeg] batch of 3")


def test_native_log_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """raw leaves fd 2 alone; an unknown mode is refused with the variable's name and choices."""
    monkeypatch.setenv(NATIVE_LOG_ENV, "raw")
    assert collapse_native_logs() is False
    monkeypatch.setenv(NATIVE_LOG_ENV, "quiet")
    with pytest.raises(ValueError, match=r"DALI_PIPELINES_NATIVE_LOG='quiet': use one of collapse, raw"):
        collapse_native_logs()
