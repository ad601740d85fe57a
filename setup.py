"""The native kernels (``custom_ops/cpp``) built with CMake when the package is built or installed.

Everything else is declared in pyproject.toml. The libraries land in ``i2f_deploy/custom_ops/lib``
(``custom_ops/lib`` in an editable install). Without a C++ compiler or CMake the package installs
without them and runs the ops' function bodies; without OpenVINO in the build environment only
the kernel library is built. Either way the build says so, and so does every runner at run time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE = Path(__file__).parent / "custom_ops" / "cpp"
PACKAGE = "i2f_deploy.custom_ops.lib"
LIBRARIES = ("libi2f_kernels", "libi2f_openvino")  # the CMake project's targets


class NativeLibrary(Extension):
    """One library of the CMake project: setuptools places it (and copies it into the source tree
    for an editable install, if it was built), CMake builds them all."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{PACKAGE}.{name}", sources=[], optional=True)


def _openvino_cmake_dir() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return str(Path(openvino.__file__).parent / "cmake")


class BuildNative(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        return fullname.replace(".", os.sep) + ".so"  # plain shared libraries, not Python modules

    def copy_extensions_to_source(self) -> None:  # an editable install: into custom_ops/lib
        Path(self.get_finalized_command("build_py").get_package_dir(PACKAGE)).mkdir(exist_ok=True)
        super().copy_extensions_to_source()

    def build_extensions(self) -> None:
        target = Path(self.get_ext_fullpath(self.extensions[0].name)).parent.resolve()
        scratch = Path(self.build_temp).resolve() / "native"
        openvino_dir = _openvino_cmake_dir()
        configure = ["cmake", "-S", str(SOURCE), "-B", str(scratch), f"-DCMAKE_INSTALL_PREFIX={target}",
                     f"-DI2F_OPENVINO={'ON' if openvino_dir else 'OFF'}"]
        if openvino_dir:
            configure.append(f"-DOpenVINO_DIR={openvino_dir}")
        if os.environ.get("CMAKE_GENERATOR") is None and _runs(["ninja", "--version"]):
            configure += ["-G", "Ninja"]
        try:
            for command in (configure, ["cmake", "--build", str(scratch)], ["cmake", "--install", str(scratch)]):
                subprocess.run(command, check=True, stdout=sys.stderr)
        except (OSError, subprocess.CalledProcessError) as error:
            self.warn(f"native kernels not built ({error}); the custom ops will run their ONNX function bodies")
            return
        if not openvino_dir:
            self.warn("openvino is not in the build environment: built the kernel library only, no OpenVINO extension")



def _runs(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True).returncode == 0
    except OSError:
        return False


setup(ext_modules=[NativeLibrary(name) for name in LIBRARIES], cmdclass={"build_ext": BuildNative})
