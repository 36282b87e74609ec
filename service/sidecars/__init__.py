"""Other model managers' files beside a model: sidecars with its hash and ids, and preview images."""
