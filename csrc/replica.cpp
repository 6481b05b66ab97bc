// Replicate: decomposition (step 1), databases (step 2), plans (step 3), sampling (step 4), mirroring
// avel_fast/reference/augment.py.
#include "replica.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "rng.hpp"

namespace avel::replica {

std::vector<Piece> decompose(const int64_t* row, int64_t T) {
    std::vector<uint8_t> taken(T, 0);
    std::vector<Piece> pieces;
    int64_t first_class = -1;
    for (int64_t a = 0; a < T;) {
        const int64_t c = row[a];
        int64_t b = a;
        while (b + 1 < T && row[b + 1] == c) ++b;
        if (c != kBackground) {
            if (first_class < 0) first_class = c;
            if (a > 0 && row[a - 1] == kBackground && !taken[a - 1]) {
                pieces.push_back({kStartBorder, c, a - 1, 2});
                taken[a - 1] = 1;
            } else {
                pieces.push_back({kStartOpen, c, a, 1});
            }
            taken[a] = 1;
            const int64_t n = b - a + 1;
            if (n >= 3) {
                pieces.push_back({kContinue, c, a + 1, n - 2});
                for (int64_t t = a + 1; t < b; ++t) taken[t] = 1;
            }
            if (n >= 2) {
                taken[b] = 1;
                if (b + 1 < T && row[b + 1] == kBackground) {
                    pieces.push_back({kEndBorder, c, b, 2});
                    taken[b + 1] = 1;
                } else {
                    pieces.push_back({kEndOpen, c, b, 1});
                }
            }
        }
        a = b + 1;
    }
    for (int64_t t = 0; t < T;) {
        if (taken[t]) {
            ++t;
            continue;
        }
        int64_t u = t;
        while (u < T && !taken[u]) ++u;
        pieces.push_back({kBackgroundRun, first_class, t, u - t});
        t = u;
    }
    std::stable_sort(pieces.begin(), pieces.end(), [](const Piece& x, const Piece& y) { return x.first < y.first; });
    return pieces;
}

Sampler::Sampler(const LabelView& labels) : videos_(labels.videos), segments_(labels.segments) {
    const int64_t T = segments_;
    const int64_t num_keys = kNumPieceTypes * kNumEventClasses * (T + 1);
    std::vector<std::vector<int64_t>> buckets(num_keys);
    std::vector<std::vector<Piece>> decompositions(videos_);
    std::vector<int64_t> classes;
    for (int64_t v = 0; v < videos_; ++v) {
        const int64_t* row = labels.row(v);
        decompositions[v] = decompose(row, T);
        for (const Piece& piece : decompositions[v]) {
            if (piece.type == kContinue) {
                for (int64_t window = 1; window <= piece.length; ++window) {
                    for (int64_t s = piece.first; s <= piece.first + piece.length - window; ++s) {
                        buckets[key(kContinue, piece.event_class, window)].push_back(v * T + s);
                    }
                }
            } else if (piece.type != kBackgroundRun) {
                buckets[key(piece.type, piece.event_class, piece.length)].push_back(v * T + piece.first);
            }
        }
        labels.event_classes(v, classes);
        for (int64_t t = 0; t < T;) {
            if (row[t] != kBackground) {
                ++t;
                continue;
            }
            int64_t u = t;
            while (u < T && row[u] == kBackground) ++u;
            for (int64_t c : classes) {
                for (int64_t window = 1; window <= u - t; ++window) {
                    for (int64_t s = t; s <= u - window; ++s) {
                        buckets[key(kBackgroundRun, c, window)].push_back(v * T + s);
                    }
                }
            }
            t = u;
        }
    }
    key_offsets_.assign(num_keys + 1, 0);
    for (int64_t k = 0; k < num_keys; ++k) {
        key_offsets_[k + 1] = key_offsets_[k] + static_cast<int64_t>(buckets[k].size());
    }
    entries_.reserve(key_offsets_.back());
    for (const auto& bucket : buckets) entries_.insert(entries_.end(), bucket.begin(), bucket.end());

    plan_offsets_.assign(videos_ + 1, 0);
    for (int64_t v = 0; v < videos_; ++v) {
        for (const Piece& piece : decompositions[v]) {
            if (piece.type != kContinue && piece.type != kBackgroundRun) {
                plan_.push_back(draw(key(piece.type, piece.event_class, piece.length), v, piece.first, piece.length));
                continue;
            }
            if (piece.event_class < 0) {
                plan_.push_back({piece.first, piece.length, 0, 0, 0, 0});
                continue;
            }
            int64_t longest = 0;
            for (int64_t window = piece.length; window >= 1; --window) {
                const auto [count, lo, hi] = own_range(key(piece.type, piece.event_class, window), v);
                if (count > hi - lo) {
                    longest = window;
                    break;
                }
            }
            const int64_t chunk = longest ? longest : piece.length;
            for (int64_t dst = piece.first, remaining = piece.length; remaining > 0;) {
                const int64_t size = std::min(chunk, remaining);
                plan_.push_back(draw(key(piece.type, piece.event_class, size), v, dst, size));
                dst += size;
                remaining -= size;
            }
        }
        plan_offsets_[v + 1] = static_cast<int64_t>(plan_.size());
    }
}

std::array<int64_t, 3> Sampler::own_range(int64_t k, int64_t video) const {
    const auto begin = entries_.begin() + key_offsets_[k];
    const auto end = entries_.begin() + key_offsets_[k + 1];
    const int64_t lo = std::lower_bound(begin, end, video * segments_) - begin;
    const int64_t hi = std::lower_bound(begin, end, (video + 1) * segments_) - begin;
    return {key_offsets_[k + 1] - key_offsets_[k], lo, hi};
}

Sampler::Draw Sampler::draw(int64_t k, int64_t video, int64_t dst, int64_t length) const {
    auto [count, lo, hi] = own_range(k, video);
    if (hi - lo == count) lo = hi = 0;
    return {dst, length, key_offsets_[k], count, lo, hi};
}

void Sampler::sample(const int64_t* batch, int64_t batch_size, uint64_t seed, int64_t* video_out,
                     int64_t* segment_out) const {
    for (int64_t i = 0; i < batch_size; ++i) {
        if (batch[i] < 0 || batch[i] >= videos_) {
            throw std::invalid_argument("batch_video_idx must be in 0.." + std::to_string(videos_ - 1) + ", got " +
                                        std::to_string(batch[i]) + " at position " + std::to_string(i));
        }
    }
    const int64_t T = segments_;
    for (int64_t i = 0; i < batch_size; ++i) {
        const int64_t v = batch[i];
        SplitMix64 rng(derive_seed(seed, static_cast<uint64_t>(i)));
        int64_t* videos = video_out + i * T;
        int64_t* segments = segment_out + i * T;
        for (int64_t d = plan_offsets_[v]; d < plan_offsets_[v + 1]; ++d) {
            const Draw& step = plan_[d];
            int64_t src_video = v;
            int64_t src_segment = step.dst;
            if (step.count > 0) {
                int64_t r = static_cast<int64_t>(rng.below(static_cast<uint64_t>(step.count - (step.hi - step.lo))));
                if (r >= step.lo) r += step.hi - step.lo;
                const int64_t flat = entries_[step.offset + r];
                src_video = flat / T;
                src_segment = flat % T;
            }
            for (int64_t k = 0; k < step.length; ++k) {
                videos[step.dst + k] = src_video;
                segments[step.dst + k] = src_segment + k;
            }
        }
    }
}

std::vector<int64_t> Sampler::database_sizes() const {
    std::vector<int64_t> sizes(kNumPieceTypes * kNumEventClasses, 0);
    for (int type = 0; type < kNumPieceTypes; ++type) {
        for (int64_t c = 0; c < kNumEventClasses; ++c) {
            for (int64_t length = 0; length <= segments_; ++length) {
                const int64_t k = key(type, c, length);
                sizes[type * kNumEventClasses + c] += key_offsets_[k + 1] - key_offsets_[k];
            }
        }
    }
    return sizes;
}

}  // namespace avel::replica
