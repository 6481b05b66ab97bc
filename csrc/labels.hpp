// Label sequences as the samplers read them (docs/data.md#contract): int64 [V, T], 0..27 event classes,
// 28 = background.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace avel {

constexpr int64_t kNumEventClasses = 28;
constexpr int64_t kBackground = 28;

// A read-only row-major [videos, segments] view of validated labels.
struct LabelView {
    const int64_t* data;
    int64_t videos;
    int64_t segments;

    const int64_t* row(int64_t v) const { return data + v * segments; }

    // The event classes present in video v, ascending, into `classes` (cleared first).
    void event_classes(int64_t v, std::vector<int64_t>& classes) const {
        classes.clear();
        const int64_t* r = row(v);
        for (int64_t t = 0; t < segments; ++t) {
            if (r[t] != kBackground) classes.push_back(r[t]);
        }
        std::sort(classes.begin(), classes.end());
        classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    }
};

// Checks T >= 2 and every value in 0..28 (dtype and rank are checked by the binding); the messages are
// those of avel_fast.reference.augment.check_labels.
inline LabelView checked_labels(const int64_t* data, int64_t videos, int64_t segments) {
    if (segments < 2) {
        throw std::invalid_argument("labels must have at least 2 segments per video, got " + std::to_string(segments));
    }
    for (int64_t i = 0; i < videos * segments; ++i) {
        if (data[i] < 0 || data[i] > kBackground) {
            const std::string where = "[" + std::to_string(i / segments) + ", " + std::to_string(i % segments) + "]";
            throw std::invalid_argument("labels must be in 0..28 (28 = background), got " + std::to_string(data[i]) +
                                        " at " + where);
        }
    }
    return {data, videos, segments};
}

}  // namespace avel
