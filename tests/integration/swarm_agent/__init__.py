"""The per-node guarantee agent (hubmetrics.nodeagent) on a real one-node swarm."""
