"""``i2f-deploy validate``: check that every exported backend agrees with the PyTorch model."""
