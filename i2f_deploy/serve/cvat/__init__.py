"""A nuclio function for CVAT (``function.yaml`` + ``main.py``) on the serving core; see docs/cvat.md."""
