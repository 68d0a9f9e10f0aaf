import pytest
import torch

from bench import hardware

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx2 avx512f avx512_bf16
processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx2 avx512f avx512_bf16
"""


def test_cpu_model_and_isa_from_cpuinfo():
    model, flags = hardware.cpu_flags(CPUINFO)
    assert model == "AMD EPYC 9B14" and hardware.isa(flags) == "AVX-512 BF16"
    assert hardware.isa({"avx2", "fma"}) == "AVX2"
    assert hardware.isa({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}) == "AMX-BF16"
    assert hardware.isa(set()) == "none"


def test_flop_count_of_a_matmul_step_is_the_formula():
    a = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 4, requires_grad=True)

    def step():
        (a @ w).sum().backward()

    assert hardware.count_flops(step) == 3 * 2 * 8 * 16 * 4  # forward + two backward matmuls


def test_share_and_gemm_rate():
    assert hardware.share(2e9, 10.0, 40.0) == pytest.approx(0.5)
    assert hardware.gemm_rate(torch.float32, n=64, seconds=0.03) > 0
