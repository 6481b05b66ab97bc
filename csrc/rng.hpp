// The pseudo-random generator shared by the C++ sampler and its Python twin (avel_fast/_rng.py).
//
// SplitMix64 (Steele, Lea & Flood 2014; the seeding generator of xoshiro): a 64-bit counter advanced by the
// golden-ratio increment and passed through a bijective finaliser. Bounded draws use rejection of the
// 2^64 mod n smallest outputs, so they are unbiased and take the same number of steps in both languages.
#pragma once
#include <cstdint>

namespace avel {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kStreamMul = 0xD1B54A32D192ED03ULL;

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Seed of an independent stream `stream` under a user seed (threads, classes, videos each get one).
inline uint64_t derive_seed(uint64_t seed, uint64_t stream) {
    return mix64(mix64(seed) ^ (stream * kStreamMul + 1));
}

class SplitMix64 {
public:
    explicit SplitMix64(uint64_t seed) : state_(seed) {}

    uint64_t next() {
        state_ += kGolden;
        return mix64(state_);
    }

    // Uniform integer in [0, n), n >= 1.
    uint64_t below(uint64_t n) {
        const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
        for (;;) {
            const uint64_t x = next();
            if (x >= threshold) return x % n;
        }
    }

private:
    uint64_t state_;
};

}  // namespace avel
