// Replicate (DPNet §3.4, Alg. 1; docs/augmentations.md#replicate): sub-event databases and replica sampling.
// The algorithm, step by step, is written once in avel_fast/reference/augment.py (the Python twin); this file
// mirrors it draw for draw.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "labels.hpp"

namespace avel::replica {

enum PieceType : int { kStartBorder, kStartOpen, kEndBorder, kEndOpen, kContinue, kBackgroundRun, kNumPieceTypes };

struct Piece {
    int type;
    int64_t event_class;  // -1: background piece of a video without events
    int64_t first;
    int64_t length;
};

// Step 1: the sub-events of one label sequence, in position order.
std::vector<Piece> decompose(const int64_t* row, int64_t segments);

class Sampler {
public:
    // Steps 2-3: databases and every video's plan, built once.
    explicit Sampler(const LabelView& labels);

    // Step 4: one replica per batch row into row-major [batch_size, T] outputs; checks the indices first.
    void sample(const int64_t* batch, int64_t batch_size, uint64_t seed, int64_t* video_out,
                int64_t* segment_out) const;

    // Entries per piece type and event class (all lengths together): [kNumPieceTypes][kNumEventClasses].
    std::vector<int64_t> database_sizes() const;

    int64_t videos() const { return videos_; }
    int64_t segments() const { return segments_; }

private:
    // One draw of a plan: positions dst..dst+length-1 from entries[offset + r] of a key of size `count`,
    // skipping the video's own entries [lo, hi); count == 0 keeps the original segments.
    struct Draw {
        int64_t dst, length, offset, count, lo, hi;
    };

    int64_t key(int type, int64_t event_class, int64_t length) const {
        return (type * kNumEventClasses + event_class) * (segments_ + 1) + length;
    }
    Draw draw(int64_t key, int64_t video, int64_t dst, int64_t length) const;
    // Size of `key` and the video's own entries' index range [lo, hi) within it.
    std::array<int64_t, 3> own_range(int64_t key, int64_t video) const;

    int64_t videos_, segments_;
    std::vector<int64_t> key_offsets_;  // CSR over keys
    std::vector<int64_t> entries_;
    std::vector<int64_t> plan_offsets_;  // CSR over videos
    std::vector<Draw> plan_;
};

}  // namespace avel::replica
