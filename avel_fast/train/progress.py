"""What a training run tells its user while it runs: a silent base class and a rich progress bar."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """The engine's hooks; this base class reports nothing (library use, tests)."""

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, total_steps: int, completed_steps: int) -> None:
        pass

    def step(self, epoch: int, epochs: int, loss: float, accuracy: float, steps: int = 1) -> None:
        """`steps` more training steps are done; `loss` and `accuracy` are the epoch's running figures."""

    def epoch_done(self, record: dict) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class RichTrainProgress(TrainProgress):
    """One bar over the whole run: epoch, running loss and accuracy of the epoch, ETA; a line per epoch."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[accuracy]:6.2%}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = None

    def __enter__(self) -> RichTrainProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, total_steps: int, completed_steps: int) -> None:
        """A fresh bar (a run of several stages starts one per stage)."""
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(
            "train", total=total_steps, completed=completed_steps, epoch="-", loss=float("nan"), accuracy=0.0
        )

    def step(self, epoch: int, epochs: int, loss: float, accuracy: float, steps: int = 1) -> None:
        self.bar.update(self.task, advance=steps, epoch=f"{epoch + 1}/{epochs}", loss=loss, accuracy=accuracy)

    def epoch_done(self, record: dict) -> None:
        val = record["val"]
        mark = "  [green]best[/green]" if record["best"] else ""
        f1 = f" F1 non-AVE {_number(val['non_ave_f1'])} AVE {_number(val['ave_f1'])}" if "ave_f1" in val else ""
        self.console.print(
            f"epoch {record['epoch']:>3} loss {record['train_loss']:.3f} acc {record['train_accuracy']:6.2%} | val acc "
            f"{val['accuracy']:6.2%}{f1} | {record['seconds']:.0f}s{mark}"
        )

    def note(self, text: str) -> None:
        self.console.print(text)


def _number(value: float | None) -> str:
    return "  nan" if value is None or value != value else f"{value:.3f}"
