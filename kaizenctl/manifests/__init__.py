"""Manifests: the user-facing YAML format (MANIFESTS.md), its models, loader and checks."""
