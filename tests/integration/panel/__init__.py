"""The resource panel tested for real: a package, so its package-scoped fixtures (the busy containers, the hub, the panel) end with it."""
