"""`avel-fast env`: versions, devices, usable backends and the native extension."""
import platform

import typer
from rich.console import Console
from rich.table import Table


def env() -> None:
    """Print versions of Python/torch/Triton, devices, usable backends and whether the native extension loaded."""
    import torch

    from avel_fast import __version__
    from avel_fast.backend import usable_backends

    table = Table(title="avel_fast environment", show_header=False)
    table.add_row("avel_fast", __version__)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    try:
        import triton

        table.add_row("triton", triton.__version__)
    except ImportError:
        table.add_row("triton", "not installed")
    table.add_row("cpu threads", str(torch.get_num_threads()))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            table.add_row(f"cuda:{i}", torch.cuda.get_device_name(i))
    else:
        table.add_row("cuda", "no CUDA device")
    for name, status in usable_backends().items():
        table.add_row(f"backend {name}", status)
    try:
        from avel_fast import _sampler  # noqa: F401

        table.add_row("native sampler", "loaded (avel_fast._sampler)")
    except ImportError as err:
        table.add_row("native sampler", f"NOT loaded: {err}")
    Console().print(table)
    raise typer.Exit(0)
