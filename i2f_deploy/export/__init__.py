"""From the PyTorch model to deployable ONNX graphs (encoder, decoder) and their manifest."""
