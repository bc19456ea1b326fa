"""CPU speed settings that only work before TensorFlow is first imported.

TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI-class
features; elsewhere (AMD EPYC, older Xeons) convolutions fall back to Eigen kernels about
4x slower (compare benchmarks/train_speed.py with and without --noonednn). `import
overfeat_tf` turns oneDNN on when TensorFlow is not yet imported, unless the user opted
out with `OVERFEAT_TF_ONEDNN=0` or a binary's `--noonednn` flag, or set
`TF_ENABLE_ONEDNN_OPTS` themselves.

Since the choice cannot wait until TensorFlow runs, an automatic one comes from a
calibration of this machine cached on disk (`overfeat_tf.onednn_calibration`: AlexNet
training steps timed with oneDNN on and off, each in a subprocess, once per CPU model,
instruction sets and TensorFlow version). Where the cache holds this machine's entry,
its faster setting is used; `OVERFEAT_TF_ONEDNN=auto` measures it first if it is
missing. The decision and its reason are in `onednn_record()` (written to a training
run's metrics).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
OPT_OUT_ENV = "OVERFEAT_TF_ONEDNN"
_OPT_OUT_FLAGS = ("--noonednn", "--onednn=false", "--onednn=0", "--onednn=False")
CACHE_ENV = "OVERFEAT_TF_ONEDNN_CACHE"  # the calibration file; default below
_record: dict = {}


def onednn_requested(argv: Sequence[str] = ()) -> bool:
    """False when the environment or a `--noonednn` style flag in `argv` opts out."""
    if os.environ.get(OPT_OUT_ENV, "1").lower() in ("0", "false", "no", "off"):
        return False
    return not any(arg in _OPT_OUT_FLAGS for arg in argv)


def cache_path() -> str:
    """The calibration cache: $OVERFEAT_TF_ONEDNN_CACHE, or onednn.json under
    $XDG_CACHE_HOME/overfeat_tf (default ~/.cache/overfeat_tf)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "overfeat_tf", "onednn.json")


def machine_key() -> str:
    """What a calibration holds for: CPU model, instruction sets, TensorFlow version, and
    any instruction-set cap set in the environment (`isa_caps`: a capped CPU is another
    machine to oneDNN)."""
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    caps = "".join(f" | {cap}" for cap in isa_caps())
    return f"{cpu_model()} | {' '.join(cpu_flags())} | tensorflow {version}{caps}"


def cached_calibration() -> dict | None:
    """This machine's entry in the calibration cache, or None (no file, no entry, or an
    unreadable file)."""
    try:
        with open(cache_path()) as f:
            entry = json.load(f).get(machine_key())
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("onednn"), bool) else None


def onednn_record() -> dict:
    """How oneDNN was decided in this process: {"status", "reason"} and, when from a
    calibration, its measured seconds per step; for a run's metrics."""
    return dict(_record)


def configure_onednn(argv: Sequence[str] = ()) -> str:
    """Sets `TF_ENABLE_ONEDNN_OPTS` before TensorFlow loads; returns what was decided.

    Returns one of "enabled", "disabled", "user" (the variable was already set),
    "too_late" (TensorFlow was already imported: a one-time warning says how to fix it).
    Enabled unless opted out, or unless this machine's cached calibration found oneDNN
    slower (see the module docstring).
    """
    status, reason, calibration = _decide(argv)
    _record.clear()
    _record.update(status=status, reason=reason, key=machine_key())
    if calibration:
        _record["calibration"] = calibration
    return status


def _decide(argv: Sequence[str]) -> tuple[str, str, dict | None]:
    if ONEDNN_ENV in os.environ:
        return "user", f"{ONEDNN_ENV}={os.environ[ONEDNN_ENV]} set by the user", None
    wanted = onednn_requested(argv)
    if "tensorflow" in sys.modules:
        if wanted:
            logging.getLogger("overfeat_tf").warning(
                "TensorFlow was imported before overfeat_tf, so oneDNN CPU kernels may be "
                "off (up to 4x slower convolutions on CPUs without AVX-512 VNNI). Import "
                "overfeat_tf first, or set %s=1 before starting Python.",
                ONEDNN_ENV,
            )
        return "too_late", "TensorFlow was imported first", None
    calibration = None
    if wanted:
        calibration = cached_calibration()
        if calibration is None and os.environ.get(OPT_OUT_ENV, "").lower() == "auto":
            from overfeat_tf import onednn_calibration  # a subprocess per setting

            calibration = onednn_calibration.calibrate()
    if not wanted:
        reason = "opted out"
    elif calibration is not None:
        wanted = calibration["onednn"]
        reason = f"calibrated on this machine ({cache_path()})"
    else:
        reason = "default (no calibration for this machine)"
    os.environ[ONEDNN_ENV] = "1" if wanted else "0"
    return ("enabled" if wanted else "disabled"), reason, calibration


_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
)


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` field of /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> tuple[str, ...]:
    """The CPU's vector instruction-set flags that matter to TensorFlow's kernels (from
    /proc/cpuinfo; empty where it cannot be read), in a fixed order."""
    present = set((_cpuinfo_field("flags") or _cpuinfo_field("Features") or "").split())
    return tuple(flag for flag in _ISA_FLAGS if flag in present)


def isa_caps() -> list[str]:
    """The instruction-set caps set in the environment, as NAME=VALUE: oneDNN's (in
    TensorFlow and PyTorch), PyTorch's own kernels', and XLA's `--xla_cpu_max_isa`."""
    caps = [
        f"{name}={os.environ[name]}"
        for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
        if os.environ.get(name)
    ]
    return caps + [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_cpu_max_isa" in f]


def cpu_summary() -> str:
    """One line naming the CPU, its instruction-set flags and core count, for reports,
    and the instruction-set caps set in the environment (`isa_caps`)."""
    caps = isa_caps()
    return (
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); instruction sets: "
        f"{' '.join(cpu_flags()) or 'unknown'}" + (f"; capped by {' '.join(caps)}" if caps else "")
    )


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), for benchmark reports."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()
