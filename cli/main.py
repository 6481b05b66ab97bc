"""Root of the `avel-fast` command: sub-commands live in sibling modules."""
import typer

from avel_fast.cli.audio import audio_app
from avel_fast.cli.data import data_app
from avel_fast.cli.env import env
from avel_fast.cli.report import report_command
from avel_fast.cli.train import eval_command, train_app

app = typer.Typer(
    name="avel-fast",
    help="Audio-visual event localization: data, sound features, training, evaluation and reports (docs/cli.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rich's panels put a "<bool>" placeholder after every flag
)


@app.callback()
def main() -> None:
    """Audio-visual event localization: data, sound features, training, evaluation and reports (docs/cli.md)."""


app.command("env")(env)
app.add_typer(data_app, name="data")
app.add_typer(audio_app, name="audio")
app.add_typer(train_app, name="train")
app.command("eval")(eval_command)
app.command("report")(report_command)
