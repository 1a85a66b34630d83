"""params.yaml -> the library's settings: one module per params section, the only reader of that
section (params.py holds the shared mechanism). Stages and tools import these, never each other."""
