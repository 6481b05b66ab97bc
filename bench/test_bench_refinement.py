"""Label refinement benchmarks (docs/weak.md#label-refinement), on the AVE baseline at the paper's sizes.

* ``refine/step2``: Step 2 (`refine_labels`, N = 4, s = 2, τ = 0.05) on every training video: "batched"
  (per-segment features once per video and once per distinct second video, then one gather and one forward
  per chunk of videos) vs "window-loop" (one synthetic video built and predicted at a time). On CUDA all 3339 + 178 videos (7x7 maps stored in float16, as the
  engine keeps them); on CPU `CPU_STEP2_VIDEOS` videos: both sides are linear in the number of videos.
* ``refine/step1-epoch``: Step 1 with the auxiliary objective (forward, backward and an Adam step per batch of
  `step1_loss`): "feature-splice" (the per-segment attention on 2 videos per example) vs "raw-splice" (the
  model on the spliced raw maps, 1 + T1 = 5 videos per example). On CUDA one epoch (54 batches of 64); on CPU
  2 batches of 16: both sides are linear in the number of batches.

The base model is `avel_fast.reference.ave.AVEBaseline` when the package has it, else `AVEStandIn` below, the
same computation (its forward as documented in docs/models.md). Features are random non-negative tensors of
the real shapes (the cost does not depend on their values).
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _device import CUDA, DEVICE, DEVICE_NAME, synchronize
from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, NUM_EVENT_CLASSES, NUM_SEGMENTS, VISUAL_SHAPE
from avel_fast.reference.label_refinement import (
    STRIDE,
    TAU,
    WINDOW,
    WeakBase,
    draw_second_videos,
    refine_labels,
    step1_loss,
    threshold_window_labels,
    window_starts,
)

EVENT_VIDEOS, BACKGROUND_VIDEOS = 3339, 178
CPU_STEP2_VIDEOS = 32
STEP2_EVENT, STEP2_BACKGROUND = (EVENT_VIDEOS, BACKGROUND_VIDEOS) if CUDA else (CPU_STEP2_VIDEOS - 4, 4)
STEP1_BATCH, STEP1_BATCHES = (64, (EVENT_VIDEOS + BACKGROUND_VIDEOS) // 64) if CUDA else (16, 2)
STEP1_BACKGROUND = BACKGROUND_VIDEOS if CUDA else 16
LOCATIONS, CHANNELS = VISUAL_SHAPE[0] * VISUAL_SHAPE[1], VISUAL_SHAPE[2]


class AVEStandIn(nn.Module):
    """The AVE baseline's computation: audio-guided attention over the 49 locations of each segment (its
    `segment_features`), then two bidirectional LSTMs and the classifier (`from_segment_features`)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm_audio = nn.LSTM(AUDIO_DIM, 128, batch_first=True, bidirectional=True)
        self.lstm_video = nn.LSTM(CHANNELS, 128, batch_first=True, bidirectional=True)
        self.affine_audio = nn.Linear(AUDIO_DIM, CHANNELS)
        self.affine_video = nn.Linear(CHANNELS, CHANNELS)
        self.affine_v = nn.Linear(CHANNELS, LOCATIONS, bias=False)
        self.affine_g = nn.Linear(CHANNELS, LOCATIONS, bias=False)
        self.affine_h = nn.Linear(LOCATIONS, 1, bias=False)
        self.L1 = nn.Linear(2 * 256, 64)
        self.L2 = nn.Linear(64, NUM_CLASSES)

    def segment_features(self, audio, visual):
        batch, segments = audio.shape[:2]
        maps = visual.reshape(batch * segments, LOCATIONS, CHANNELS)
        video = F.relu(self.affine_video(maps))
        sound = F.relu(self.affine_audio(audio.reshape(batch * segments, AUDIO_DIM)))
        content = self.affine_v(video) + self.affine_g(sound).unsqueeze(2)
        weights = self.affine_h(torch.tanh(content)).squeeze(2).softmax(dim=-1)
        return audio, torch.bmm(weights.unsqueeze(1), maps).reshape(batch, segments, CHANNELS)

    def from_segment_features(self, audio, attended):
        hidden_audio, _ = self.lstm_audio(audio)
        hidden_video, _ = self.lstm_video(attended)
        return self.L2(F.relu(self.L1(F.relu(torch.cat((hidden_audio, hidden_video), dim=-1)))))

    def forward(self, audio, visual):
        return self.from_segment_features(*self.segment_features(audio, visual))


def base_model() -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    try:
        from avel_fast.reference.ave import AVEBaseline
    except ImportError:
        return AVEStandIn().to(DEVICE), "AVEStandIn"
    return AVEBaseline().to(DEVICE), "AVEBaseline"


def random_videos(num_event: int, num_background: int):
    """Audio, float16 maps and video labels on the device; event videos first, then the background-only ones."""
    generator = torch.Generator(device=DEVICE).manual_seed(0)
    num_videos = num_event + num_background
    audio = torch.rand(num_videos, NUM_SEGMENTS, AUDIO_DIM, device=DEVICE, generator=generator)
    visual = torch.empty(num_videos, NUM_SEGMENTS, *VISUAL_SHAPE, device=DEVICE, dtype=torch.float16)
    for chunk in visual.split(256):
        chunk.copy_(torch.rand(chunk.shape, device=DEVICE, generator=generator))
    classes = torch.randint(0, NUM_EVENT_CLASSES, (num_event,), device=DEVICE, generator=generator)
    video_labels = torch.zeros(num_videos, NUM_CLASSES, device=DEVICE)
    video_labels[torch.arange(num_event, device=DEVICE), classes] = 1.0
    video_labels[num_event:, -1] = 1.0
    return audio, visual, video_labels


def window_loop_labels(base, audio, visual, video_labels, second):
    """Step 2 one synthetic video at a time (eq. 9 by slicing), the way a direct transcription of the paper runs."""
    base.model.eval()
    labels = []
    with torch.no_grad():
        for i in range(len(audio)):
            j = int(second[i])
            probs = []
            for start in window_starts(NUM_SEGMENTS, WINDOW, STRIDE).tolist():
                window = slice(start, start + WINDOW)
                synthetic_audio, synthetic_visual = audio[j].clone(), visual[j].float()
                synthetic_audio[window], synthetic_visual[window] = audio[i, window], visual[i, window].float()
                probs.append(base.video_prob(base.model(synthetic_audio[None], synthetic_visual[None]))[0])
            labels.append(threshold_window_labels(video_labels[i : i + 1], torch.stack(probs)[None], TAU))
    return torch.cat(labels)


@pytest.fixture(scope="module")
def step2_videos():
    return random_videos(STEP2_EVENT, STEP2_BACKGROUND)


@pytest.fixture(scope="module")
def step2_expected(step2_videos):
    """The batched labels, computed once, that the loop must agree with."""
    audio, visual, video_labels = step2_videos
    model, _ = base_model()
    background = torch.arange(STEP2_EVENT, len(audio), device=DEVICE)
    second = draw_second_videos(len(audio), background, torch.Generator().manual_seed(0))
    return second, refine_labels(WeakBase.ave(model), audio, visual, video_labels, second)


@pytest.mark.parametrize("impl", ["window-loop", "batched"])
def test_step2_refine_labels(benchmark, impl, step2_videos, step2_expected):
    audio, visual, video_labels = step2_videos
    second, expected = step2_expected
    model, model_name = base_model()
    base = WeakBase.ave(model)

    def run():
        if impl == "batched":
            labels = refine_labels(base, audio, visual, video_labels, second)
        else:
            labels = window_loop_labels(base, audio, visual, video_labels, second)
        synchronize()
        return labels

    benchmark.group = "refine/step2"
    benchmark.extra_info.update(impl=impl, device=DEVICE_NAME, model=model_name, videos=len(audio))
    rounds = 1 if CUDA and impl == "window-loop" else 3
    labels = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1)
    assert labels.shape == expected.shape
    assert float((labels == expected).all(dim=-1).float().mean()) > 0.999  # a probability at τ may round apart


@pytest.fixture(scope="module")
def step1_videos():
    return random_videos(STEP1_BATCH * STEP1_BATCHES, STEP1_BACKGROUND)


def step1_epoch(base, optimizer, audio, visual, video_labels) -> float:
    """`STEP1_BATCHES` batches of Step 1 with the auxiliary objective, second videos drawn per batch."""
    generator = torch.Generator().manual_seed(0)
    num_event = STEP1_BATCH * STEP1_BATCHES
    background = torch.arange(num_event, len(audio), device=DEVICE)
    order = torch.randperm(num_event, generator=generator).to(DEVICE)
    total = torch.zeros((), device=DEVICE)
    for rows in order.split(STEP1_BATCH):
        seconds = draw_second_videos(len(rows), background, generator)
        loss = step1_loss(
            base, audio[rows], visual[rows].float(), video_labels[rows],
            (audio[seconds], visual[seconds].float(), video_labels[seconds]),
        )  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
    synchronize()
    return float(total) / STEP1_BATCHES


@pytest.mark.parametrize("impl", ["raw-splice", "feature-splice"])
def test_step1_epoch_with_auxiliary_objective(benchmark, impl, step1_videos):
    model, model_name = base_model()
    base = WeakBase.ave(model, splice_features=impl == "feature-splice")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    benchmark.group = "refine/step1-epoch"
    benchmark.extra_info.update(
        impl=impl, device=DEVICE_NAME, model=model_name, batch_size=STEP1_BATCH, batches=STEP1_BATCHES
    )
    loss = benchmark.pedantic(step1_epoch, args=(base, optimizer, *step1_videos), rounds=3, warmup_rounds=1)
    assert loss > 0
