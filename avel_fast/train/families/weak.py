"""What the AVE baseline and PSP families share (docs/weak.md#recipes): the public recipes (Adam 1e-3, batch 64,
constant learning rate, the last partial batch dropped, raw features), the losses per setting, the options of
label refinement and its recipe.

Objective per batch: SEL, the family's supervised loss on the segment labels; WSEL, ``L_MIL = g(Φ(x), Y)`` with
the family's video prediction Φ (softmax of its MIL pooling over time) and weak loss g, plus what a stage of label
refinement adds (docs/weak.md#label-refinement):

* ``aux`` (Step 1 of ``a+lr``): ``+ L_A``, one background-only partner per video drawn uniformly from the
  training rows, seeded by ``(seed, epoch, step)`` (`aux_partners`);
* ``lr``, ``a+lr`` (Step 3): ``+ L_LR`` against the window labels of Step 2, ``RunData.extras["window_labels"]``;
* ``dummy``: ``+ L_LR`` against every window labelled with its video's labels;
* ``oracle``: ``+ L_LR`` against the ground-truth window labels of the batch's segment labels;
* ``pl``: the family's supervised loss against ``RunData.extras["segment_labels"]`` (pseudo labels) instead.

The recipe of ``--refine`` (`WeakFamily.run`, TLR §4-5) runs its stages into one run directory ``RUN``:

* ``lr``, ``a+lr``: Step 1, plain weak training (``a+lr``: with the auxiliary objective ``L_A``), an ordinary run
  in ``RUN/step1/``; Step 2, the window labels of every training row from the selected Step-1 checkpoint in eval
  mode (`refine_labels`, one background-only partner per video drawn once; ``keep_video_label``: with
  `keep_video_label`), written to ``RUN/window_labels.h5``, and their quality against the segment labels of the
  validation videos next to the trivial and ground-truth labels' (and, for information, of the training videos)
  in ``RUN/window_labels.json``, with a warning when they score below the trivial labels; Step 3, a fresh model
  trained with ``L_MIL + L_LR`` in ``RUN`` itself.
* ``dummy``, ``oracle``: Step 3 only, every window labelled with its video's labels / its ground truth.
* ``pl``: Step 1 plain, the pseudo labels of the training rows (``argmax`` of the Step-1 scores,
  `pseudo_labels`) in ``RUN/pseudo_labels.h5``, then a fresh model trained on them with the family's supervised
  loss in ``RUN``.

Step 1 trains ``step1_epochs`` with a seed derived from the run seed (so that Step 3, seeded with the run seed,
starts from a different initialisation); the last stage trains ``epochs``. ``resume`` continues whichever stage
was interrupted: a finished Step 1 (its ``test_metrics.json``) and stored labels are reused.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import h5py
import torch

from avel_fast._rng import derive_seed
from avel_fast.atomic import atomic_write
from avel_fast.constants import BACKGROUND, NUM_SEGMENTS
from avel_fast.metrics import segment_metrics
from avel_fast.reference.label_refinement import (
    WeakBase,
    all_background_event_videos,
    aux_loss,
    check_splice_window,
    draw_second_videos,
    dummy_window_labels,
    keep_video_label,
    oracle_window_labels,
    pseudo_labels,
    refine_labels,
    window_label_comparison,
    window_label_quality,
    window_loss,
)
from avel_fast.train.data import load_run_data
from avel_fast.train.distributed import launched_by_torchrun
from avel_fast.train.errors import TrainingError
from avel_fast.train.families.base import ModelFamily, Objective, SegmentOptions
from avel_fast.train.loop import StepOutput, fit
from avel_fast.train.options import option
from avel_fast.train.predict import predict_scores
from avel_fast.train.progress import TrainProgress
from avel_fast.train.run_dir import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    TEST_METRICS_FILE,
    check_new_run_dir,
    check_writable,
    load_checkpoint,
    read_config,
    write_config,
    write_json,
)
from avel_fast.train.runtime import autocast
from avel_fast.train.schedule import ConstantSchedule

AUX_STREAM = 3
"""Stream of the run seed under which the ``L_A`` partners of every (epoch, step) are drawn."""
STEP1_STREAM, PARTNER_STREAM = 4, 5
"""Streams of the run seed: the seed of Step 1 and the partners of the Step-2 synthetic videos."""
STEP1_DIR = "step1"
"""The first stage of a label-refinement recipe, inside its run directory."""
LABEL_FILES = {"window_labels": "window_labels.h5", "segment_labels": "pseudo_labels.h5"}
"""The labels a Step 1 leads to, by their `RunData.extras` key, and the file in the run directory holding them."""

WEAK_RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=64, standardize=False)
"""Adam 1e-3 without weight decay, batch 64, raw features: both public codes and TLR §5 (docs/weak.md#recipes)."""
STAGE_EPOCHS = {
    "paper": dict(step1_epochs=200, epochs=100),
    "quick": dict(step1_epochs=4, epochs=4),
    "smoke": dict(step1_epochs=1, epochs=1),
}
"""Epochs of the refinement stages (TLR §5: 200 for Step 1, 100 for Step 3); quick gives each stage the budget of
a plain quick run (a last stage of one or two epochs does not converge at these sizes), smoke the least."""
REFINEMENTS = ("none", "lr", "a+lr", "dummy", "pl", "oracle")
"""``--refine``: plain training, or the label-refinement recipe of the module docstring."""
WINDOWED = ("lr", "a+lr", "dummy", "oracle")


@dataclass(frozen=True)
class WeakOptions(SegmentOptions):
    """The options of the AVE baseline and PSP: label refinement (docs/weak.md#label-refinement)."""

    aux: bool = option(False, "WSEL: add the auxiliary objective L_A (Step 1 of --refine a+lr on its own).")
    refine: str = option(
        "none", "WSEL: none | lr | a+lr | dummy | pl | oracle (label refinement, docs/weak.md).", choices=REFINEMENTS
    )
    window: int = option(4, "Label refinement: segments per window N (4).", low=1)
    stride: int = option(2, "Label refinement: window stride s (2).", low=1)
    tau: float = option(0.05, "Label refinement: window-label threshold τ in [0, 1] (0.05).", low=0.0, high=1.0,
                        upto=True)  # fmt: skip
    step1_epochs: int = option(200, "Label refinement: epochs of Step 1 (--epochs: the last stage).", low=1)
    keep_video_label: bool = option(
        False, "--refine lr/a+lr: an event video whose windows all came out background keeps its video label."
    )

    needs = (
        ("window", "needs --refine lr, a+lr or dummy, or --aux", lambda c: c.options.refine in ("none", "pl") and
         not c.options.aux),
        ("stride", "needs --refine lr, a+lr or dummy, or --aux", lambda c: c.options.refine in ("none", "pl") and
         not c.options.aux),
        ("tau", "needs --refine lr or a+lr", lambda c: c.options.refine not in ("lr", "a+lr")),
        ("step1_epochs", "needs --refine lr, a+lr or pl", lambda c: c.options.refine in ("none", "dummy", "oracle")),
        ("keep_video_label", "needs --refine lr or a+lr", lambda c: c.options.keep_video_label and
         c.options.refine not in ("lr", "a+lr")),
    )  # fmt: skip

    @classmethod
    def preset_values(cls, preset: str, setting: str) -> dict:
        epochs = {"paper": cls.paper_epochs[setting], "quick": cls.quick_epochs, "smoke": 2}[preset]
        values = dict(WEAK_RECIPE, epochs=epochs, step1_epochs=STAGE_EPOCHS[preset]["step1_epochs"])
        return {**values, "batch_size": 16} if preset == "smoke" else values

    paper_epochs: ClassVar[dict[str, int]]
    """Epochs of a plain run of the paper preset per setting."""
    quick_epochs: ClassVar[int]

    @classmethod
    def dependent_values(cls, preset: str, values: dict) -> dict:
        """A refined run's ``epochs`` are those of its last stage (`STAGE_EPOCHS`)."""
        return {"epochs": STAGE_EPOCHS[preset]["epochs"]} if values.get("refine", "none") != "none" else {}

    def validate(self, config, explicit=frozenset()) -> None:
        super().validate(config, explicit)
        if self.refine != "none" and config.setting != "wsel":
            raise TrainingError(f"--refine {self.refine} refines weak labels: use it with --setting wsel")
        if self.aux and config.setting != "wsel":
            raise TrainingError("--aux is a weak objective: use it with --setting wsel")
        if self.aux and self.refine != "none":
            raise TrainingError(f"--aux is Step 1 of --refine a+lr: it cannot go with --refine {self.refine}")
        if self.aux or self.refine in WINDOWED:
            auxiliary = self.aux or self.refine == "a+lr"
            try:
                check_splice_window(NUM_SEGMENTS, self.window, self.stride, auxiliary=auxiliary)
            except ValueError as err:
                raise TrainingError(f"--window {self.window} --stride {self.stride}: {err}") from None
        if launched_by_torchrun() and self.refine != "none":
            raise TrainingError(f"--refine {self.refine} runs its stages on a single process: leave torchrun out")
        if launched_by_torchrun() and self.aux:
            raise TrainingError(
                "--aux splices per-segment features, which DistributedDataParallel does not expose: run it on a "
                "single process (not under torchrun)"
            )


def background_rows(video_labels: torch.Tensor) -> torch.Tensor:
    """Rows whose video label is background only (the partners of synthetic videos), int64 on their device."""
    return (video_labels[:, :BACKGROUND] <= 0).all(dim=1).nonzero().flatten()


def aux_partners(background: torch.Tensor, batch_size: int, seed: int, epoch: int, step: int) -> torch.Tensor:
    """One background-only partner row per video of a batch, uniform with replacement (TLR eq. 14)."""
    generator = torch.Generator().manual_seed(derive_seed(derive_seed(derive_seed(seed, AUX_STREAM), epoch), step))
    return draw_second_videos(batch_size, background, generator)


class AutocastModel:
    """`model`'s per-segment split (`segment_features`, `from_segment_features`) under the run's precision, the
    scores in fp32: what `WeakBase` calls while training."""

    def __init__(self, model, config) -> None:
        self.model, self.config = model, config

    def segment_features(self, audio: torch.Tensor, visual: torch.Tensor):
        with autocast(self.config):
            return self.model.segment_features(audio, visual)

    def from_segment_features(self, *features: torch.Tensor) -> torch.Tensor:
        with autocast(self.config):
            return self.model.from_segment_features(*features).float()


class WeakObjective(Objective):
    """The loss of the module docstring, in fp32 from the model's outputs."""

    def __init__(self, family, model, data, config) -> None:
        super().__init__(family, model, data, config)
        self.base = family.weak_base(AutocastModel(model, config))
        self.background = None
        if config.options.aux:
            self.background = background_rows(data.train.video_labels)
            if len(self.background) == 0:
                raise TrainingError("--aux needs background-only videos in the training set (none found)")

    def outputs(self, batch) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...]]:
        """The segment scores ``[B, T, C]`` and the whole output of the model's forward, in fp32."""
        output = self.forward(batch.audio, batch.visual)
        output = tuple(part.float() for part in output) if isinstance(output, tuple) else output.float()
        return self.family.head_scores(output), output

    def __call__(self, batch, epoch: int, step: int) -> StepOutput:
        options, extras = self.config.options, self.data.extras
        if options.aux:
            return self.step_with_aux(batch, epoch, step)
        scores, output = self.outputs(batch)
        if self.config.setting == "sel":
            return StepOutput(self.family.supervised_loss(output, batch.labels), scores, batch.labels)
        if options.refine == "pl":
            labels = extras["segment_labels"][batch.index]
            return StepOutput(self.family.supervised_loss(output, labels), scores, labels)
        loss = self.family.mil_loss(scores, batch.video_labels)
        if options.refine in ("lr", "a+lr"):
            loss = loss + self.window_loss(scores, extras["window_labels"][batch.index])
        elif options.refine == "dummy":
            labels = dummy_window_labels(batch.video_labels, scores.shape[1], options.window, options.stride)
            loss = loss + self.window_loss(scores, labels)
        elif options.refine == "oracle":
            loss = loss + self.window_loss(scores, oracle_window_labels(batch.labels, options.window, options.stride))
        return StepOutput(loss, scores, batch.labels)

    def window_loss(self, scores: torch.Tensor, window_labels: torch.Tensor) -> torch.Tensor:
        """``L_LR`` (TLR eqs. 12-13)."""
        return window_loss(self.base, scores, window_labels, self.config.options.window, self.config.options.stride)

    def step_with_aux(self, batch, epoch: int, step: int) -> StepOutput:
        """``L_MIL + L_A`` (TLR eqs. 14-18): the per-segment features of the batch and of its partners in one
        forward, ``L_MIL`` on the batch's own, ``L_A`` on the synthetic videos spliced from both."""
        train, config, size = self.data.train, self.config, len(batch.index)
        partners = aux_partners(self.background, size, config.seed, epoch, step)
        audio = torch.cat((batch.audio, train.audio.index_select(0, partners)))
        visual = torch.cat((batch.visual, train.visual.index_select(0, partners).to(train.compute_dtype)))
        labels = torch.cat((batch.video_labels, train.video_labels.index_select(0, partners)))
        features = self.base.segment_features(audio, visual)
        scores = self.base.scores(tuple(feature[:size] for feature in features))
        rows = torch.arange(size, device=audio.device)
        window, stride = config.options.window, config.options.stride
        aux = aux_loss(self.base, features, rows, rows + size, labels, window, stride)
        return StepOutput(self.family.mil_loss(scores, batch.video_labels) + aux, scores, batch.labels)


def step1_config(config):
    """The config of Step 1 of `config`: plain weak training (``a+lr``: with ``aux``), ``step1_epochs``."""
    options = config.options
    return config.replace(
        refine="none", aux=options.refine == "a+lr", keep_video_label=False, epochs=options.step1_epochs,
        seed=derive_seed(config.seed, STEP1_STREAM),
    )  # fmt: skip


def _write_labels(path: Path, name: str, values: torch.Tensor, attrs: dict) -> None:
    """``values`` as the dataset `name` of an HDF5 file, written atomically (`atomic_write`)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset(name, data=values.cpu().numpy())
        file.attrs.update(attrs)
    atomic_write(path, lambda stream: stream.write(buffer.getbuffer()))


def read_labels(path: Path, name: str) -> torch.Tensor:
    with h5py.File(path, "r") as file:
        return torch.from_numpy(file[name][...])


class WeakFamily(ModelFamily):
    """The shared part of the AVE baseline and PSP families (module docstring). Subclasses give `build_model`,
    `video_probabilities`, `weak_loss`, `supervised_loss` and `weak_base`."""

    options_class: ClassVar[type[WeakOptions]] = WeakOptions
    objective_class = WeakObjective
    drop_last = True

    def schedule(self, config) -> ConstantSchedule:
        return ConstantSchedule()

    def weak_base(self, model) -> WeakBase:
        """The model as label refinement sees it: its MIL pooling and weak loss."""
        raise NotImplementedError

    def head_scores(self, output) -> torch.Tensor:
        """The raw segment scores in the model's forward output."""
        return output

    def scores(self, model, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.head_scores(model(audio, visual))

    def weak_loss(self, probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """g: the weak loss of video probabilities against binary label vectors."""
        raise NotImplementedError

    def mil_loss(self, scores: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
        """``L_MIL = g(Φ(x), Y)``, mean over the videos."""
        return self.weak_loss(self.video_probabilities(scores), video_labels)

    def supervised_loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        """The public fully supervised loss of the model's forward output against segment labels ``[B, T]``."""
        raise NotImplementedError

    def resumable(self, run_dir: Path) -> bool:
        """A ``last.pt``, or the first stage of a label-refinement recipe (``step1/``)."""
        return super().resumable(run_dir) or (run_dir / STEP1_DIR).is_dir()

    def run(
        self,
        config,
        run_dir: Path,
        *,
        resume: bool = False,
        progress: TrainProgress | None = None,
        max_epochs_this_run: int | None = None,
    ) -> dict | None:
        """The recipe of ``config.options.refine`` (module docstring); returns the test report of the last stage,
        or None when a stage stopped early (`max_epochs_this_run` applies to each stage)."""
        refine = config.options.refine
        if refine == "none":
            return super().run(
                config, run_dir, resume=resume, progress=progress, max_epochs_this_run=max_epochs_this_run
            )
        run_dir = Path(run_dir)
        progress = progress or TrainProgress()
        check_writable(run_dir)
        if not resume:
            check_new_run_dir(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run_dir, config)
        elif not (run_dir / CONFIG_FILE).is_file():
            raise TrainingError(f"--resume: {run_dir} is not a run directory (no {CONFIG_FILE})")
        extras = {}
        stages = {"lr": "window_labels", "a+lr": "window_labels", "pl": "segment_labels"}
        if refine in stages:
            key = stages[refine]
            labels_file = run_dir / LABEL_FILES[key]
            if labels_file.is_file():
                extras[key] = read_labels(labels_file, key)
            else:
                step1_dir = run_dir / STEP1_DIR
                if not (step1_dir / TEST_METRICS_FILE).is_file():
                    progress.stage(f"step 1 of --refine {refine}: weak training into {step1_dir}")
                    stage_resume = resume and (step1_dir / LAST_FILE).is_file()
                    done = fit(
                        self, step1_config(config), step1_dir, resume=stage_resume, progress=progress,
                        max_epochs_this_run=max_epochs_this_run,
                    )  # fmt: skip
                    if done is None:
                        return None
                progress.note(f"--refine {refine}: {key.replace('_', ' ')} from the step-1 checkpoint")
                stage = self.window_label_stage if key == "window_labels" else self.pseudo_label_stage
                extras[key] = stage(config, run_dir, progress)
        progress.stage(f"last stage of --refine {refine}: training into {run_dir}")
        return fit(
            self, config, run_dir, resume=resume and (run_dir / LAST_FILE).is_file(), progress=progress,
            max_epochs_this_run=max_epochs_this_run, extras=extras, checked=True,
        )  # fmt: skip

    def _step1_model(self, config, step1_dir: Path):
        """The selected Step-1 checkpoint in its model (eval mode), the data of Step 1, the checkpoint and the
        config."""
        stage = read_config(step1_dir, device=config.device)
        best = load_checkpoint(step1_dir / BEST_FILE, config.device)
        data = load_run_data(stage, self.pooled_visual, self.training_set)
        model = self.build(stage)
        model.load_state_dict(best["model"])
        return model.eval(), data, best, stage

    def window_label_stage(self, config, run_dir: Path, progress: TrainProgress) -> torch.Tensor:
        """Step 2: window labels ``[V, T1, 29]`` of the training rows (file and report of the module docstring)."""
        model, data, best, _ = self._step1_model(config, run_dir / STEP1_DIR)
        base = self.weak_base(model)
        train_rows, val, options = data.train, data.val, config.options
        background = background_rows(train_rows.video_labels)
        if len(background) == 0:
            raise TrainingError("label refinement needs background-only videos in the training set (none found)")
        generator = torch.Generator().manual_seed(derive_seed(config.seed, PARTNER_STREAM))
        windows = dict(window=options.window, stride=options.stride)
        refined = dict(windows, tau=options.tau, compute_dtype=train_rows.compute_dtype)
        partners = draw_second_videos(len(train_rows), background, generator)
        labels = refine_labels(base, train_rows.audio, train_rows.visual, train_rows.video_labels, partners, **refined)
        # validation videos, each spliced with a background-only training video appended after them
        appended = len(val) + torch.arange(len(background), device=background.device)
        val_partners = torch.cat((draw_second_videos(len(val), appended, generator), appended))
        val_labels = refine_labels(
            base,
            torch.cat((val.audio, train_rows.audio[background])),
            torch.cat((val.visual, train_rows.visual[background])),
            torch.cat((val.video_labels, train_rows.video_labels[background])),
            val_partners,
            **refined,
        )[: len(val)]
        all_background = all_background_event_videos(labels, train_rows.video_labels)
        if options.keep_video_label:
            labels = keep_video_label(labels, train_rows.video_labels)
            val_labels = keep_video_label(val_labels, val.video_labels)
        compared = window_label_comparison(val_labels.cpu(), val.video_labels.cpu(), val.labels.cpu(), **windows)
        below = compared["refined"]["window_accuracy"] < compared["trivial"]["window_accuracy"]
        stored = dict(windows, tau=options.tau, keep_video_label=options.keep_video_label, step1_epoch=best["epoch"])
        _write_labels(run_dir / LABEL_FILES["window_labels"], "window_labels", labels.to(torch.uint8), stored)
        write_json(run_dir / "window_labels.json", {
            **stored, "step1_val_accuracy": best["val_accuracy"],
            "val": compared["refined"], "val_trivial": compared["trivial"],
            "val_ground_truth": compared["ground_truth"], "refined_below_trivial": below,
            "train": window_label_quality(labels, train_rows.labels.cpu(), **windows),
            "train_event_videos": len(train_rows) - len(background),
            "train_event_videos_all_background": int(all_background.sum()),
        })  # fmt: skip
        if below:
            progress.note(
                f"warning: the refined window labels score below the trivial ones on the validation videos (window "
                f"accuracy {compared['refined']['window_accuracy']:.3f} < "
                f"{compared['trivial']['window_accuracy']:.3f}; {int(all_background.sum())} training event videos "
                "have only background windows): a longer or better step 1, a lower --tau or --keep-video-label may "
                "help (docs/weak.md#label-quality)"
            )
        return labels

    def pseudo_label_stage(self, config, run_dir: Path, progress: TrainProgress) -> torch.Tensor:
        """AVE+PL: pseudo segment labels ``[V, T]`` of the training rows from the selected Step-1 checkpoint, with
        their accuracy against the training segment labels (for information) in ``RUN/pseudo_labels.json``."""
        model, data, best, stage = self._step1_model(config, run_dir / STEP1_DIR)
        labels = pseudo_labels(predict_scores(model, data.train, stage), data.train.video_labels)
        _write_labels(run_dir / LABEL_FILES["segment_labels"], "segment_labels", labels, {"step1_epoch": best["epoch"]})
        accuracy = segment_metrics(labels.cpu(), data.train.labels.cpu())["accuracy"]
        write_json(run_dir / "pseudo_labels.json", {"step1_epoch": best["epoch"], "train_accuracy": accuracy})
        return labels
