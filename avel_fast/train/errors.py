"""The error of a training or evaluation request that cannot run."""


class TrainingError(ValueError):
    """A training or evaluation request that cannot run: the message names the option or file at fault."""
