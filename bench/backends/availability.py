"""Whether the peer loaders' libraries can run here: each check says what is missing and the fix.

The registry asks these before a run (to leave a backend out, with the reason) and the tests
ask them to skip. Nothing heavy is imported until a check runs; the SPDL check loads SPDL's
FFmpeg binding, since only loading it tells whether the system's FFmpeg fits.
"""

from __future__ import annotations

import importlib.util
import re

PEERS_EXTRA = "pip install 'dali-pipelines[peers]'"
# SPDL's wheels carry one binding per FFmpeg major version (4 to 9) and load the newest that the
# system provides; libavdevice pulls in every other FFmpeg library they link.
FFMPEG_FIX = ("install FFmpeg's shared libraries (Debian 12: apt-get install --no-install-recommends "
              "libavdevice59; `make test` does it as root)")


def spdl_missing(device: str) -> str | None:
    """Why SPDL cannot deliver batches to ``device`` here; None if it can."""
    if importlib.util.find_spec("spdl") is None or importlib.util.find_spec("spdl.io") is None:
        return f"needs SPDL: {PEERS_EXTRA}"
    import spdl.io.utils

    try:
        spdl.io.utils.get_ffmpeg_versions()
    except (ImportError, RuntimeError) as err:
        # SPDL's message quotes one loader error per binding, newest FFmpeg first: keep the first.
        first = re.search(r'"[\w.]+: ([^"]+)"', str(err))
        cause = first.group(1) if first else str(err)
        return f"SPDL loads none of FFmpeg 4-9's shared libraries here ({cause}): {FFMPEG_FIX}"
    if device != "gpu":
        return None
    if not spdl.io.utils.built_with_cuda():  # also False when its CUDA extension does not load
        return ("SPDL's CUDA extension does not load here (it links the driver's libcuda.so.1 and "
                "libnvcuvid.so): run spdl with --device cpu")
    if not spdl.io.utils.built_with_nvjpeg():
        return ("this SPDL build has no nvJPEG (spdl.io.utils.built_with_nvjpeg() is False; the spdl-io "
                "0.8 wheels on PyPI are built without it): build SPDL with nvJPEG, or run spdl with "
                "--device cpu")
    return None


def torchcodec_missing(device: str) -> str | None:
    """Why torchcodec cannot deliver batches to ``device`` here; None if it can.

    Its JPEG decoders (libjpeg-turbo, nvJPEG) ship inside the wheel: no FFmpeg is needed for them.
    """
    del device  # CPU and CUDA decoders come in one wheel; CUDA itself is checked by --device gpu
    if importlib.util.find_spec("torchcodec") is None:
        return f"needs torchcodec: {PEERS_EXTRA}"
    return None
