"""The native kernels a test needs (built by the install)."""

from __future__ import annotations

import pytest


def require_native(openvino: bool = True) -> None:
    """The native kernels must have been built by the install (a missing library fails the test:
    CI runs the native path; the function-body path has tests of its own). ``openvino=False``:
    the kernel library alone (the sanitizer build has no OpenVINO extension)."""
    from i2f_deploy.custom_ops.native import KERNELS_LIBRARY, OPENVINO_LIBRARY, library_dir

    wanted = (KERNELS_LIBRARY, OPENVINO_LIBRARY) if openvino else (KERNELS_LIBRARY,)
    missing = [name for name in wanted if not (library_dir() / name).is_file()]
    if missing:
        pytest.fail(f"native kernels not built: {', '.join(missing)} missing in {library_dir()} (pip install -e . with g++ and CMake)")
