"""gridplace's test environment: local control plane, vLLM-compatible simulator, load generator."""
