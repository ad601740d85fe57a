"""i2f-deploy: Inter2Former on CPUs through ONNX Runtime and OpenVINO."""

__version__ = "0.1.0"
