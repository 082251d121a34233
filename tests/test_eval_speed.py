from __future__ import annotations

from eval.speed import cpuinfo, int8_unit

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni

processor\t: 1
model name\t: AMD EPYC
"""


def test_cpuinfo_reads_the_first_processors_fields() -> None:
    fields = cpuinfo(CPUINFO)
    assert fields["cpu family"] == "25" and fields["model"] == "17"
    assert fields["model name"] == "AMD EPYC"
    assert "avx512_vnni" in fields["flags"].split()


def test_int8_unit_names_the_best_unit_and_says_when_there_is_none() -> None:
    assert int8_unit({"avx2", "avx512_vnni", "amx_int8"}) == "AMX int8"
    assert int8_unit({"avx2", "avx512f", "avx512_vnni"}) == "AVX-512 VNNI"
    assert int8_unit({"avx2", "avx_vnni"}) == "AVX-VNNI"
    assert int8_unit({"avx2", "fma"}) == "AVX2, no VNNI"
    assert int8_unit({"sse2"}) == "no AVX2"
