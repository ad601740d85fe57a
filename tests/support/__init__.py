"""Helpers the tests share (fixtures stay in ``tests/conftest.py``): the golden data's place,
commands run in-process, servers on loopback, images as clients send them, and the annotation
tools and browser the system tests drive. ``pythonpath = ["tests"]`` (pyproject) makes this
package importable as ``support``."""
