"""The ambient-sound pretext pieces: paired synthetic scenes, networks, targets, NMI, the linear probe, and the
mechanism end to end (texture k-means recovers the scenes; a probe on the pretext-trained network beats the same
network at random initialisation) (`docs/audio.md#pretext`)."""
import numpy as np
import pytest
import torch

from avel_fast.audio import texture_statistics
from avel_fast.pretext import (
    build_visual_net,
    linear_probe,
    network_features,
    nmi,
    pretext_loss,
    pretext_targets,
    recalibrate_batchnorm,
    synthetic_scenes,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_synthetic_scenes_are_paired_balanced_and_deterministic():
    scenes = synthetic_scenes(3, 14, num_scenes=7, seconds=1.1)
    assert scenes.waveforms.shape == (14, 17_600) and scenes.waveforms.dtype == torch.float32
    assert scenes.images.shape == (14, 3, 32, 32) and scenes.sample_rate == 16_000
    assert torch.bincount(scenes.labels).tolist() == [2] * 7 and len(scenes.recipes) == 7
    assert scenes.waveforms.abs().max() <= 1 and torch.isfinite(scenes.images).all()
    again = synthetic_scenes(3, 14, num_scenes=7, seconds=1.1)
    assert torch.equal(again.waveforms, scenes.waveforms) and torch.equal(again.images, scenes.images)
    other = synthetic_scenes(4, 14, num_scenes=7, seconds=1.1)
    assert other.recipes != scenes.recipes
    rates = sorted(recipe.am_rate_hz for recipe in scenes.recipes)
    assert 0.5 <= rates[0] and rates[-1] <= 32 and rates[-1] / rates[0] > 10
    with pytest.raises(ValueError, match="num_scenes >= 2"):
        synthetic_scenes(0, 4, num_scenes=1)


def test_texture_kmeans_recovers_the_scenes():
    scenes = synthetic_scenes(0, 48, seconds=2.0)
    features = texture_statistics(scenes.waveforms, scenes.sample_rate, method="decimated")
    targets = pretext_targets(features, "cluster", k=6, seed=0)
    assert targets.targets.shape == (48,) and targets.num_outputs == 6
    assert nmi(targets.targets, scenes.labels) >= 0.9


def test_bit_targets_and_losses():
    features = torch.randn(40, 12, generator=torch.Generator().manual_seed(0))
    bits = pretext_targets(features, "bits", k=5)
    assert bits.targets.shape == (40, 5) and bits.targets.dtype == torch.float32
    assert set(bits.targets.unique().tolist()) == {0.0, 1.0} and bits.num_outputs == 5
    logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    expected = -(bits.targets * logits.sigmoid().log() + (1 - bits.targets) * (1 - logits.sigmoid()).log()).mean()
    torch.testing.assert_close(pretext_loss(logits, bits.targets, "bits"), expected)
    clusters = pretext_targets(features, "cluster", k=4)
    expected = -logits[:, :4].log_softmax(dim=1).gather(1, clusters.targets[:, None]).mean()
    torch.testing.assert_close(pretext_loss(logits[:, :4], clusters.targets, "cluster"), expected)
    with pytest.raises(ValueError, match="kind"):
        pretext_targets(features, "vq", k=4)
    with pytest.raises(ValueError, match="kind"):
        pretext_loss(logits, bits.targets, "vq")


@pytest.mark.parametrize(("kind", "shape", "width"), [("alexnet", (2, 3, 224, 224), 4096),
                                                      ("small", (2, 3, 32, 32), 128), ("pool5", (2, 512, 7, 7), 128)])
def test_visual_networks(kind, shape, width):
    torch.manual_seed(0)
    net = build_visual_net(kind, 15)
    images = torch.randn(shape)
    assert net(images).shape == (2, 15) and net.feature_dim == width
    features = network_features(net, images, batch_size=1)
    assert features.shape == (2, width) and net.training


def test_visual_network_errors():
    with pytest.raises(ValueError, match="kind"):
        build_visual_net("resnet", 10)
    with pytest.raises(ValueError, match="num_outputs"):
        build_visual_net("small", 0)


def test_nmi():
    a = torch.tensor([0, 0, 1, 1, 2, 2])
    assert nmi(a, torch.tensor([5, 5, 3, 3, 9, 9])) == pytest.approx(1.0)
    assert nmi(torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    assert nmi(torch.zeros(4), torch.zeros(4)) == 1.0
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
    metrics = pytest.importorskip("sklearn.metrics")
    assert nmi(x, y) == pytest.approx(metrics.normalized_mutual_info_score(x, y), abs=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        nmi(x, y[:10])


def test_recalibrate_batchnorm_takes_the_statistics_of_the_images():
    torch.manual_seed(0)
    net = build_visual_net("small", 4)
    images = 3 + 2 * torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert recalibrate_batchnorm(net, images, batch_size=64) and net.training
    first = net.features[1]
    conv = net.features[0](images)
    torch.testing.assert_close(first.running_mean, conv.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.running_var, conv.var(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert first.momentum == 0.1 and int(first.num_batches_tracked) == 1
    assert not recalibrate_batchnorm(build_visual_net("alexnet", 4), images)


def test_probe_json_probes_the_random_initialisation_with_recalibrated_batchnorm(tmp_path):
    """The family's probe.json (`docs/audio.md#pretext-training`) scores the network at its initialisation with
    BatchNorm statistics of the training images, and says so."""
    import json

    from avel_fast.train import resolve_config
    from avel_fast.train.runtime import seed_everything
    from avel_fast.train.families.pretext import PretextFamily, load_pretext_data

    config = resolve_config("pretext", preset="smoke", device="cpu")
    data, family = load_pretext_data(config), PretextFamily()
    seed_everything(config.seed)
    initial = family.build(config)
    recalibrate_batchnorm(initial, data.train.images)
    train_features, test_features = network_features(initial, data.train.images), network_features(
        initial, data.test.images)
    expected = linear_probe(train_features, data.train.scenes, test_features, data.test.scenes)
    family.finish(tmp_path, initial, data, config)
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["random_init_batchnorm_recalibrated"] is True
    assert probe["probe_accuracy"]["random_init"] == expected


def test_linear_probe_separates_separable_classes():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    features = torch.randn(90, 5, generator=generator) + 8 * torch.nn.functional.one_hot(labels, 5)
    assert linear_probe(features[:60], labels[:60], features[60:], labels[60:]) == 1.0
    noise = torch.randn(90, 5, generator=generator)
    assert linear_probe(noise[:60], labels[:60], noise[60:], labels[60:]) < 0.7
    with pytest.raises(ValueError, match="one label per"):
        linear_probe(features, labels[:5], features, labels)
    with pytest.raises(ValueError, match="equal F"):
        linear_probe(features, labels, features[:, :3], labels)


def test_pretext_training_beats_random_initialisation():
    """Owens et al.'s mechanism on paired scenes: cluster the sounds, train the image net on the clusters,
    probe its features on the scene labels of held-out images against the same net at random init."""
    scenes = synthetic_scenes(0, 480, seconds=1.1)
    train, probe = slice(0, 240), slice(240, 480)
    features = texture_statistics(scenes.waveforms[train], scenes.sample_rate, method="decimated")
    targets = pretext_targets(features, "cluster", k=6, seed=0)
    torch.manual_seed(0)
    net = build_visual_net("small", targets.num_outputs)
    untrained = build_visual_net("small", targets.num_outputs)
    untrained.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    generator = torch.Generator().manual_seed(0)
    images = scenes.images[train]
    for _ in range(8):
        for batch in torch.randperm(240, generator=generator).split(32):
            loss = pretext_loss(net(images[batch]), targets.targets[batch], "cluster")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    labels = scenes.labels[probe]
    accuracies = {}
    for name, model in (("pretext", net), ("random", untrained)):
        frozen = network_features(model, scenes.images[probe])
        accuracies[name] = linear_probe(frozen[:120], labels[:120], frozen[120:], labels[120:])
    assert accuracies["pretext"] >= accuracies["random"] + 0.05, accuracies
