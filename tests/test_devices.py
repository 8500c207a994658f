"""Whether a torch build's GPU code runs on a given GPU (compute capability)."""

from __future__ import annotations

import pytest

from batcher.api.devices import cuda_arch_problem, gpu_warnings

CUDA_128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # a current CUDA 12.8 build


@pytest.mark.parametrize(
    ("capability", "arch_list", "runs"),
    [
        ((5, 2), CUDA_128, False),  # DAS-5 TitanX (Maxwell)
        ((6, 1), CUDA_128, False),  # GTX 1080 Ti (Pascal)
        ((8, 6), CUDA_128, True),
        ((8, 9), ["sm_80", "sm_86"], True),  # same major, newer minor: binary compatible
        ((9, 0), ["sm_80", "sm_86"], False),  # newer major without PTX
        ((9, 0), ["sm_80", "compute_80"], True),  # PTX is compiled for newer GPUs at load time
        ((5, 2), ["sm_50", "sm_60", "sm_70"], True),  # an older build (CUDA 11.8 era)
        ((5, 2), [], True),  # a build that lists nothing: not checked
    ],
)
def test_cuda_arch_problem(capability: tuple[int, int], arch_list: list[str], runs: bool) -> None:
    problem = cuda_arch_problem(capability, arch_list, device="GPU 0 (X)")
    assert (problem is None) == runs
    if problem:
        assert f"compute capability {capability[0]}.{capability[1]}" in problem and "GPU 0 (X)" in problem


def test_no_warnings_without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check has nothing to find on a supported GPU")
    assert gpu_warnings() == []
