"""What a training run tells its user while it runs (docs/cli.md#train): a silent base class, a rich progress
bar for a terminal and plain lines for a file or a pipe."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """The loop's hooks; this base class reports nothing (library use, tests)."""

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, total_steps: int, completed_steps: int) -> None:
        """The loop starts (its data loaded and checked): `total_steps` in all, `completed_steps` done before."""

    def step(self, epoch: int, epochs: int, loss: float, accuracy: float, steps: int = 1) -> None:
        """`steps` more training steps are done; `loss` and `accuracy` are the epoch's running figures."""

    def epoch_done(self, record: dict) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def stage(self, text: str) -> None:
        """A stage of a recipe is about to start: announced when its loop starts."""


class ConsoleProgress(TrainProgress):
    """Lines on a console: the `header` of the run once, before its first line (so a request refused while its
    data loads prints only the error), the stages of a recipe when they start, a line per epoch."""

    def __init__(self, console: Console | None = None, header: str | None = None) -> None:
        self.console = console or Console()
        self.pending = [] if header is None else [header]
        self.stages: list[str] = []

    def print(self, text: str) -> None:
        for line in self.pending:
            self.console.print(line, soft_wrap=True)
        self.pending = []
        self.console.print(text, soft_wrap=True)

    def start(self, total_steps: int, completed_steps: int) -> None:
        for text in self.stages:
            self.print(text)
        self.stages = []

    def note(self, text: str) -> None:
        self.print(text)

    def stage(self, text: str) -> None:
        self.stages.append(text)

    def epoch_done(self, record: dict) -> None:
        val = record["val"]
        mark = "  [green]best[/green]" if record["best"] else ""
        f1 = f" F1 non-AVE {_number(val['non_ave_f1'])} AVE {_number(val['ave_f1'])}" if "ave_f1" in val else ""
        self.print(
            f"epoch {record['epoch']:>3} loss {record['train_loss']:.3f} acc {record['train_accuracy']:6.2%} | val acc "
            f"{val['accuracy']:6.2%}{f1} | {record['seconds']:.0f}s{mark}"
        )


class RichTrainProgress(ConsoleProgress):
    """On a terminal: one bar over the whole run (epoch, running loss and accuracy of the epoch, ETA) and the
    lines of `ConsoleProgress`."""

    def __init__(self, console: Console | None = None, header: str | None = None) -> None:
        super().__init__(console, header)
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
        """A fresh bar (a recipe of several stages starts one per stage)."""
        super().start(total_steps, completed_steps)
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(
            "train", total=total_steps, completed=completed_steps, epoch="-", loss=float("nan"), accuracy=0.0
        )

    def step(self, epoch: int, epochs: int, loss: float, accuracy: float, steps: int = 1) -> None:
        self.bar.update(self.task, advance=steps, epoch=f"{epoch + 1}/{epochs}", loss=loss, accuracy=accuracy)


class PlainTrainProgress(ConsoleProgress):
    """For a file or a pipe: the lines of `ConsoleProgress` and, at most every `interval` seconds, a line with the
    epoch, the steps done, the running loss and accuracy, the time spent and the time left."""

    def __init__(self, console: Console | None = None, header: str | None = None, interval: float = 30.0) -> None:
        super().__init__(console, header)
        self.interval, self.total, self.done, self.first = interval, 1, 0, 0
        self.started = self.last = time.monotonic()

    def start(self, total_steps: int, completed_steps: int) -> None:
        super().start(total_steps, completed_steps)
        self.total, self.done, self.first = total_steps, completed_steps, completed_steps
        self.started = self.last = time.monotonic()

    def step(self, epoch: int, epochs: int, loss: float, accuracy: float, steps: int = 1) -> None:
        self.done += steps
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last, spent = now, now - self.started
        left = spent / max(self.done - self.first, 1) * (self.total - self.done)
        self.print(
            f"epoch {epoch + 1}/{epochs} step {self.done}/{self.total} loss {loss:.4f} acc {accuracy:6.2%} | "
            f"{_clock(spent)} spent, ETA {_clock(left)}"
        )


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def _number(value: float | None) -> str:
    return "  nan" if value is None or value != value else f"{value:.3f}"
