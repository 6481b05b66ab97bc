"""The `avel-fast` command line (docs/cli.md)."""
