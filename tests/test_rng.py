"""The native and Python SplitMix64 twins give identical streams (the sampler's determinism rests on it)."""
import numpy as np
import pytest

from avel_fast import _rng, _sampler


@pytest.mark.parametrize("seed", [0, 1, 42, 2**63 + 12345, 2**64 - 1])
def test_raw_streams_equal(seed):
    py = _rng.SplitMix64(seed)
    expected = np.array([py.next() for _ in range(1000)], dtype=np.uint64)
    np.testing.assert_array_equal(_sampler.splitmix64_stream(seed, 1000), expected)


def test_known_values():
    # SplitMix64 seeded with 0: the reference values published with the algorithm.
    assert _sampler.splitmix64_stream(0, 3).tolist() == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


@pytest.mark.parametrize("seed", [0, 7, 123456789])
def test_bounded_draws_equal(seed):
    rng = np.random.default_rng(seed)
    bounds = np.concatenate([rng.integers(1, 50, 500), [1, 2, 3, 2**62 + 1, 2**63 - 1]]).astype(np.int64)
    py = _rng.SplitMix64(seed)
    expected = [py.below(int(b)) for b in bounds]
    got = _sampler.below_stream(seed, bounds)
    assert got.tolist() == expected
    assert (got >= 0).all() and (got < bounds).all()


def test_derived_streams_equal_and_distinct():
    seeds = [_rng.derive_seed(5, s) for s in range(64)]
    assert seeds == [_sampler.derive_seed(5, s) for s in range(64)]
    assert len(set(seeds)) == 64


def test_bounded_draws_are_uniform():
    draws = _sampler.below_stream(3, np.full(60_000, 6, dtype=np.int64))
    counts = np.bincount(draws, minlength=6)
    assert counts.min() > 9_500 and counts.max() < 10_500


def test_bad_bounds_rejected():
    with pytest.raises(ValueError, match="bounds must be >= 1"):
        _sampler.below_stream(0, np.array([3, 0]))
