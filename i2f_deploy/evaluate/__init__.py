"""``i2f-deploy evaluate``: the paper's interactive benchmark measured on the exported graphs."""
