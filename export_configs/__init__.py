"""Named export configurations (TOML data files); read with ``i2f_deploy.config.load_config``."""
