"""The stage layer: one click command per DVC stage, each reading its own params.yaml section."""
