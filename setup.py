"""Build script: the package layout (README "Tour") and the native sampler `avel_fast._sampler`.

`kernels/` and `cli/` are installed as `avel_fast.kernels` and `avel_fast.cli`; the extension is plain
pybind11 (numpy in/out, no torch ABI), so it builds with any C++17 compiler in seconds.
"""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

packages = find_packages(include=["avel_fast", "avel_fast.*"])
packages += ["avel_fast.kernels", "avel_fast.cli"]

sampler = Pybind11Extension(
    "avel_fast._sampler",
    sources=["csrc/module.cpp", "csrc/smb.cpp", "csrc/replica.cpp"],
    depends=["csrc/rng.hpp", "csrc/labels.hpp", "csrc/smb.hpp", "csrc/replica.hpp"],
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=["-O3"],
)

setup(
    packages=packages,
    package_dir={"avel_fast.kernels": "kernels", "avel_fast.cli": "cli"},
    ext_modules=[sampler],
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
