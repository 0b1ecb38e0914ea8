"""Build of fastloss's compiled modules.

One extension per loss family: fastloss/_<loss>.pyx plus csrc/<loss>.c and csrc/dispatch.c.
Flags: C99, -O3, never -ffast-math (it breaks NaN/inf semantics) and no -march=native (the
AVX2 kernels carry their own target attribute and are chosen at run time).

Environment switches:
  FASTLOSS_OPENMP=0/1     force OpenMP off/on (default: on when the compiler accepts it)
  FASTLOSS_NATIVE=1       add -march=native (opt-in, for a build used on this machine only)
  FASTLOSS_SANITIZE=LIST  sanitizer build (GCC/Clang), e.g. FASTLOSS_SANITIZE=address,undefined:
                          compile with -fsanitize=LIST -fno-sanitize-recover=all
                          -fno-omit-frame-pointer -g -O1, link with -fsanitize=LIST. Load the
                          runtimes first when running Python, e.g. LD_PRELOAD="$(gcc
                          -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)";
                          .ci/sanitize does all of it
  FASTLOSS_MUTATE=1       mutation build: compile with -DFL_MUTATE=1, which makes the C kernels
                          deliberately wrong (FL_MUTATE in csrc/fastloss.h: one cross-entropy
                          gradient entry per row, and the regression / binary kernels' last
                          partial vector, 1% too large). Never for use: .ci/mutation builds it
                          in a temporary copy and checks that the parity tests catch it

Build record: every build writes fastloss/_build_info.py (SOURCE_HASH, the hash of the
sources it was made from: fastloss/_sources.py) beside the compiled modules: into the
package it builds (build_py), and into the checkout for `build_ext --inplace` (git-ignored,
never in the sdist). An import of a checkout without compiled modules uses an installed
fastloss only when its record matches the checkout's sources (fastloss/_sources.py).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.build_py import build_py as _build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_sources_module():
    """fastloss/_sources.py, by its path (importing the package would run its __init__)."""
    spec = importlib.util.spec_from_file_location("_fastloss_sources", os.path.join(HERE, "fastloss", "_sources.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SOURCES = _load_sources_module()


def _write_build_info(package_dir):
    """fastloss/_build_info.py in ``package_dir``: the hash of the sources being built."""
    os.makedirs(package_dir, exist_ok=True)
    with open(os.path.join(package_dir, _SOURCES.BUILD_INFO), "w", encoding="utf-8") as f:
        f.write(_SOURCES.build_info_text(HERE))


class build_py(_build_py):
    """The package's Python files, plus the generated build record."""

    def run(self):
        super().run()
        if not self.dry_run:
            _write_build_info(os.path.join(self.build_lib, "fastloss"))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, "fastloss", _SOURCES.BUILD_INFO)]


class build_ext(_build_ext):
    """An in-place build (``build_ext --inplace``, editable installs) records its sources in
    the checkout, beside the compiled modules it puts there."""

    def run(self):
        super().run()
        if (self.inplace or getattr(self, "editable_mode", False)) and not self.dry_run:
            _write_build_info(os.path.join(HERE, "fastloss"))


def _compiler_is_msvc():
    return sys.platform == "win32" and "GCC" not in sys.version


def _compiler_accepts(flags):
    """Whether the C compiler builds and links a tiny OpenMP program with these flags."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    src = "#include <omp.h>\nint main(void) { int n = 0;\n#pragma omp parallel\n n = omp_get_num_threads();\n return n < 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(src)
        try:
            proc = subprocess.run(cc + flags + [path, "-o", os.path.join(tmp, "probe")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return proc.returncode == 0


def _openmp_flags():
    choice = os.environ.get("FASTLOSS_OPENMP", "").strip()
    if choice == "0":
        return [], []
    if _compiler_is_msvc():
        return ["/openmp"], []
    if _compiler_accepts(["-fopenmp"]):
        return ["-fopenmp"], ["-fopenmp"]
    if choice == "1":
        raise RuntimeError("FASTLOSS_OPENMP=1 but the compiler does not accept -fopenmp")
    print("WARNING: the C compiler does not support OpenMP; fastloss is built single-threaded",
          file=sys.stderr)
    return [], []


def _sanitize_flags():
    """FASTLOSS_SANITIZE=address,undefined (any -fsanitize= list): (compile, link) flags."""
    value = os.environ.get("FASTLOSS_SANITIZE", "").strip()
    if not value:
        return [], []
    if not re.fullmatch(r"[a-z,_-]+", value):
        raise RuntimeError(f"FASTLOSS_SANITIZE={value!r}: expected a comma-separated list of "
                           "sanitizer names for -fsanitize= (letters, '_', '-'), e.g. address,undefined")
    if _compiler_is_msvc():
        raise RuntimeError("FASTLOSS_SANITIZE is supported with GCC or Clang only")
    # -O1 comes after -O3 on the command line, so it wins
    return ([f"-fsanitize={value}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"],
            [f"-fsanitize={value}"])


def _flags():
    if _compiler_is_msvc():
        compile_args, link_args = ["/O2"], []
    else:
        compile_args = ["-std=c99", "-O3", "-fno-math-errno", "-Wall", "-Wno-psabi",
                        "-Wno-unused-function", "-Wno-unreachable-code"]
        link_args = []
        if os.environ.get("FASTLOSS_NATIVE") == "1":
            compile_args.append("-march=native")
    if os.environ.get("FASTLOSS_MUTATE", "").strip() == "1":
        compile_args.append("-DFL_MUTATE=1")
    san_c, san_l = _sanitize_flags()
    compile_args, link_args = compile_args + san_c, link_args + san_l
    omp_c, omp_l = _openmp_flags()
    return compile_args + omp_c, link_args + omp_l


COMPILE_ARGS, LINK_ARGS = _flags()


def extension(name, sources):
    return Extension(
        f"fastloss.{name}",
        sources=[f"fastloss/{name}.pyx"] + [f"csrc/{s}" for s in sources] + ["csrc/dispatch.c"],
        include_dirs=["csrc", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
        depends=[os.path.join("csrc", f) for f in os.listdir(os.path.join(HERE, "csrc")) if f.endswith(".h")],
    )


def discover_extensions():
    """One extension per fastloss/_<name>.pyx, built with csrc/<name>.c when that exists
    (the loss's kernels) and csrc/dispatch.c (runtime facts, the parallel loop)."""
    exts = []
    for pyx in sorted(os.listdir(os.path.join(HERE, "fastloss"))):
        if not (pyx.startswith("_") and pyx.endswith(".pyx")):
            continue
        name = pyx[:-4]
        kernel = f"{name[1:]}.c"
        exts.append(extension(name, [kernel] if os.path.exists(os.path.join(HERE, "csrc", kernel)) else []))
    return exts


EXTENSIONS = discover_extensions()

setup(
    cmdclass={"build_py": build_py, "build_ext": build_ext},
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["fastloss"],
    ),
)
