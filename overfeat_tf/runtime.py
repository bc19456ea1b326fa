"""CPU speed settings that only work before TensorFlow is first imported.

TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI-class
features; elsewhere (AMD EPYC, older Xeons) convolutions fall back to Eigen kernels about
4x slower (compare benchmarks/train_speed.py with and without --noonednn). `import
overfeat_tf` turns oneDNN on when TensorFlow is not yet imported, unless the user opted
out with `OVERFEAT_TF_ONEDNN=0` or a binary's `--noonednn` flag, or set
`TF_ENABLE_ONEDNN_OPTS` themselves.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Sequence

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
OPT_OUT_ENV = "OVERFEAT_TF_ONEDNN"
_OPT_OUT_FLAGS = ("--noonednn", "--onednn=false", "--onednn=0", "--onednn=False")


def onednn_requested(argv: Sequence[str] = ()) -> bool:
    """False when the environment or a `--noonednn` style flag in `argv` opts out."""
    if os.environ.get(OPT_OUT_ENV, "1").lower() in ("0", "false", "no", "off"):
        return False
    return not any(arg in _OPT_OUT_FLAGS for arg in argv)


def configure_onednn(argv: Sequence[str] = ()) -> str:
    """Sets `TF_ENABLE_ONEDNN_OPTS` before TensorFlow loads; returns what was decided.

    Returns one of "enabled", "disabled", "user" (the variable was already set),
    "too_late" (TensorFlow was already imported: a one-time warning says how to fix it).
    """
    if ONEDNN_ENV in os.environ:
        return "user"
    wanted = onednn_requested(argv)
    if "tensorflow" in sys.modules:
        if wanted:
            logging.getLogger("overfeat_tf").warning(
                "TensorFlow was imported before overfeat_tf, so oneDNN CPU kernels may be "
                "off (up to 4x slower convolutions on CPUs without AVX-512 VNNI). Import "
                "overfeat_tf first, or set %s=1 before starting Python.",
                ONEDNN_ENV,
            )
        return "too_late"
    os.environ[ONEDNN_ENV] = "1" if wanted else "0"
    return "enabled" if wanted else "disabled"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), for benchmark reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
