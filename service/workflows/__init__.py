"""Shared workflows: reading them out of JSON, PNG and WebP, the models they load, and where each stands."""
