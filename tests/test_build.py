"""The C sources compile in the configurations setup.py can produce, not only the one this
machine's wheel was built with: without OpenMP (a compiler lacking it builds serial), and
with the plain-C generic path that compilers without GCC vector extensions (MSVC) get."""
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"
SOURCES = sorted(p.name for p in CSRC.glob("*.c"))


def _cc():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    exe = cc.split()[0]
    if shutil.which(exe) is None:
        pytest.skip(f"no C compiler ({exe})")
    return cc.split()


@pytest.mark.skipif(not CSRC.is_dir(), reason="csrc/ is not beside the tests (installed package)")
@pytest.mark.parametrize("flags", [
    pytest.param(["-fopenmp"], id="openmp"),
    pytest.param([], id="serial"),
    pytest.param(["-DFL_FORCE_SCALAR_GENERIC"], id="plain-c-generic"),
])
def test_csrc_compiles_warning_free(flags, tmp_path):
    for src in SOURCES:
        cmd = _cc() + ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-psabi",
                       "-Wno-unknown-pragmas", "-Wno-unused-function", *flags,
                       "-c", str(CSRC / src), "-o", str(tmp_path / (src + ".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
