"""Whether this torch build can run on this machine's GPU: a check made once at job start.

Current CUDA builds of torch (the one a plain ``pip install torch`` picks) no longer carry code
for older GPU generations such as DAS-5's TitanX (Maxwell, compute capability 5.2); such a job
would fail at its first CUDA kernel, or run on the CPU if the script falls back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["cuda_arch_problem", "gpu_warnings"]


def cuda_arch_problem(
    capability: tuple[int, int], arch_list: Sequence[str], *, device: str = "GPU"
) -> str | None:
    """Say why a torch build compiled for ``arch_list`` (``torch.cuda.get_arch_list()``) cannot run
    on a GPU of compute ``capability``, or return None when it can.

    Compiled code (``sm_XY``) runs on the same major generation with an equal or higher minor;
    embedded PTX (``compute_XY``) is compiled at load time for any GPU at least that new.
    """
    major, minor = capability
    for arch in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d)(\d+)a?", arch)
        if m is None:
            continue
        kind, a_major, a_minor = m.group(1), int(m.group(2)), int(m.group(3))
        if kind == "sm" and a_major == major and a_minor <= minor:
            return None
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return None
    if not arch_list:
        return None  # a build that does not say (e.g. ROCm): nothing to check
    return (
        f"this torch build has GPU code for {', '.join(arch_list)}, but the {device} has compute "
        f"capability {major}.{minor} (sm_{major}{minor}): CUDA kernels will fail to launch. Install a "
        "torch build that still supports it (README: 'Which torch build for which GPU'), or request "
        "a newer GPU (gpu_constraint)"
    )


def gpu_warnings() -> list[str]:
    """Problems of the visible CUDA devices with this torch build (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    arch_list = torch.cuda.get_arch_list()
    out = []
    for i in range(torch.cuda.device_count()):
        name = f"GPU {i} ({torch.cuda.get_device_name(i)})"
        problem = cuda_arch_problem(torch.cuda.get_device_capability(i), arch_list, device=name)
        if problem:
            out.append(problem)
    return out
