"""``python -m avel_fast`` is the ``avel-fast`` command; ``torchrun -m avel_fast train ...`` starts it on every rank
(docs/distributed.md)."""
from avel_fast.cli.main import app

app(prog_name="avel-fast")
