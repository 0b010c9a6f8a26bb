"""The test bed: a real Docker engine, images built without a registry, real system users and a
real JupyterHub. Tests and benchmarks import these; nothing here is mocked."""
