"""The `avel-fast` command line (SPEC §10)."""
