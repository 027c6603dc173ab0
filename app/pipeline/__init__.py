"""The pipeline engine: pipelines.toml → validated config → one composed handler per route."""
