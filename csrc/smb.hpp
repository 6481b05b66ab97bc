// State Machine Based video fusion (EDRNet Alg. 1, Table 1; docs/augmentations.md#smb): a state machine, with
// transitions drawn at the training labels' own frequencies, writes a state sequence per fused video, and each
// state is filled with a random instance of that state from the class's training videos. The algorithm, step by
// step, is written once in avel_fast/reference/augment.py (the Python twin); this file mirrors it draw for draw.
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "labels.hpp"

namespace avel::smb {

enum State : int { kBg1, kBg2, kStart1, kStart2, kContinue1, kContinue2, kEnd1, kEnd2, kNumStates };
constexpr std::array<int64_t, kNumStates> kLength = {1, 2, 1, 2, 1, 2, 1, 2};

// Per (event class, state): the flat index v*T + t of each instance's first segment, ascending (step 1).
struct Databases {
    int64_t segments = 0;
    std::vector<std::vector<int64_t>> entries;  // [event class * kNumStates + state]
    std::array<bool, kNumEventClasses> present{};

    const std::vector<int64_t>& at(int64_t event_class, int state) const {
        return entries[event_class * kNumStates + state];
    }
};

Databases build_databases(const LabelView& labels);

// Step 2: counts[h][prev][p][s] (prev = kNumStates for the sequence's beginning), pooled over all videos.
class TransitionCounts {
public:
    explicit TransitionCounts(int64_t segments) : T_(segments), counts_(2 * (kNumStates + 1) * T_ * kNumStates, 0) {}

    int64_t& at(int h, int prev, int64_t p, int s) { return counts_[index(h, prev, p, s)]; }
    int64_t at(int h, int prev, int64_t p, int s) const { return counts_[index(h, prev, p, s)]; }
    const std::vector<int64_t>& flat() const { return counts_; }  // row-major [2, kNumStates + 1, T, kNumStates]

private:
    int64_t index(int h, int prev, int64_t p, int s) const {
        return ((h * (kNumStates + 1) + prev) * T_ + p) * kNumStates + s;
    }

    int64_t T_;
    std::vector<int64_t> counts_;
};

TransitionCounts count_transitions(const LabelView& labels);

// An event class that cannot be fused (absent, or no valid sequence): the binding names it in a ValueError.
struct ClassError : std::runtime_error {
    ClassError(int64_t cls, bool no_videos)
        : std::runtime_error("SMB class error"), event_class(cls), absent(no_videos) {}
    int64_t event_class;
    bool absent;
};

// Row-major [kNumEventClasses * per_class, T] outputs.
struct Output {
    int64_t* video;
    int64_t* segment;
    int64_t* label;
    int64_t* state;
};

// Steps 2-5; classes are spread over `threads` std::threads (each class has its own stream, so the output
// does not depend on the thread count).
void fuse(const LabelView& labels, int64_t per_class, uint64_t seed, int threads, const Output& out);

}  // namespace avel::smb
