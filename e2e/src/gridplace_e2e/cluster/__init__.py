"""The local Kubernetes control plane: building its binaries, topologies, up/down/status."""
