"""``i2f-deploy bench``: encoder and per-click decoder latency, memory and work, per backend."""
