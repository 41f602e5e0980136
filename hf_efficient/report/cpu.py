"""What the CPU at hand can do fast: the instruction sets that decide which variant of a model wins.

Speed figures hold only for the CPU they came from, so every speed table names it and these
features: AVX512-VNNI (int8 dot products), AVX512-BF16 (bf16 dot products), AMX (Intel's tile
units for int8 and bf16 matrix products, several times the AVX-512 rate).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> how tables name it.
FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX512",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimddp": "NEON-DOT",
    "bf16": "ARM-BF16",
}


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    fields = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields


# (vendor, family, first model, last model) -> core generation, for names that hide it: a VM's "AMD EPYC"
# is a Zen 4 in one session and a Zen 5 (twice its AVX-512 width) in the next.
GENERATIONS = {
    ("AuthenticAMD", 23, 0x00, 0x2F): "Zen",
    ("AuthenticAMD", 23, 0x30, 0xFF): "Zen 2",
    ("AuthenticAMD", 25, 0x00, 0x0F): "Zen 3",
    ("AuthenticAMD", 25, 0x20, 0x5F): "Zen 3",
    ("AuthenticAMD", 25, 0x10, 0x1F): "Zen 4",
    ("AuthenticAMD", 25, 0x60, 0xAF): "Zen 4",
    ("AuthenticAMD", 26, 0x00, 0xFF): "Zen 5",
    ("GenuineIntel", 6, 0x55, 0x55): "Skylake-SP / Cascade Lake",
    ("GenuineIntel", 6, 0x6A, 0x6C): "Ice Lake-SP",
    ("GenuineIntel", 6, 0x8F, 0x8F): "Sapphire Rapids",
    ("GenuineIntel", 6, 0xCF, 0xCF): "Emerald Rapids",
    ("GenuineIntel", 6, 0xAD, 0xAE): "Granite Rapids",
}


def cpu_name() -> str:
    """The CPU's model name; where it carries no model number (a VM's "AMD EPYC"), with its core generation
    ("AMD EPYC Zen 5"), or its CPUID family and model where the generation is not in `GENERATIONS`."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    family, model = info.get("cpu family", ""), info.get("model", "")
    if any(c.isdigit() for c in name) or not (family.isdigit() and model.isdigit()):
        return name
    vendor, family, model = info.get("vendor_id", ""), int(family), int(model)
    generation = next(
        (
            label
            for (v, f, low, high), label in GENERATIONS.items()
            if (v, f) == (vendor, family) and low <= model <= high
        ),
        None,
    )
    return f"{name} {generation}" if generation else f"{name} (family {family}, model {model})"


def cpu_features() -> list[str]:
    """The speed-relevant instruction sets of this CPU, as tables name them (empty off Linux)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return [name for flag, name in FEATURES.items() if flag in flags]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS tells it (`taskset`, a container's
    CPU set), else the machine's count. Thread counts default to this, not to `os.cpu_count()`, which
    counts cores the process cannot use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def check_threads(threads: int | None, setting: str) -> None:
    """Refuse timing on more threads than `usable_cores`: the extra threads wait for a core, so the times
    measure the contention, not the model. `setting` names the value, e.g. "--threads 64"."""
    cores = usable_cores()
    if threads is not None and threads > cores:
        raise ValueError(
            f"{setting}: this process may use {cores} cores; give at most that many (more threads than cores "
            "time the contention, not the model)."
        )


def has_fast_bf16() -> bool:
    """Whether bf16 matrix products run in hardware (AVX512-BF16 or AMX), so a bf16 baseline is worth timing."""
    return bool({"AVX512-BF16", "AMX-BF16", "ARM-BF16"} & set(cpu_features()))


def cpu_text(name: str, features: list[str]) -> str:
    """E.g. "AMD EPYC (AVX2, AVX512, AVX512-VNNI, AVX512-BF16)": how every speed table names its CPU."""
    return f"{name or 'an unrecorded CPU'}" + (f" ({', '.join(features)})" if features else "")


def describe_cpu(threads: int | str | None = None) -> str:
    """This machine's CPU, e.g. "AMD EPYC (AVX2, AVX512, AVX512-VNNI, AVX512-BF16), 1 thread"."""
    text = cpu_text(cpu_name(), cpu_features() or ["no listed vector extensions"])
    if threads is not None:
        text += f", {threads} thread" + ("" if threads == 1 else "s")
    return text
