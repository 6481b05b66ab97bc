// SMB video fusion: databases (step 1), transition counts (step 2), feasibility (step 3), class checks (step 4),
// generation (step 5), mirroring avel_fast/reference/augment.py.
#include "smb.hpp"

#include <algorithm>
#include <thread>
#include <utility>

#include "rng.hpp"

namespace avel::smb {
namespace {

constexpr int kBegin = kNumStates;

struct Successors {
    std::array<int, 4> states;
    int count;
};

// kSuccessors[started][state] (state kBegin last), started = a START is at or before the state; same order as
// SMB_SUCCESSORS in the twin.
constexpr Successors kNone{{0, 0, 0, 0}, 0};
constexpr Successors kBeforeEvent{{kBg1, kBg2, kStart2, 0}, 3};
constexpr Successors kInsideEvent{{kContinue1, kContinue2, kEnd1, kEnd2}, 4};
constexpr Successors kAfterEvent{{kBg1, kBg2, 0, 0}, 2};
constexpr std::array<std::array<Successors, kNumStates + 1>, 2> kSuccessors = {{
    {kBeforeEvent, kBeforeEvent, kNone, kNone, kNone, kNone, kNone, kNone,
     Successors{{kBg1, kBg2, kStart1, kStart2}, 4}},
    {kAfterEvent, kAfterEvent, kInsideEvent, kInsideEvent, kInsideEvent, kInsideEvent, kNone, kAfterEvent, kNone},
}};

bool is_start(int s) { return s == kStart1 || s == kStart2; }
bool is_terminal(int s) { return s == kBg1 || s == kBg2 || s == kEnd1 || s == kEnd2; }

// good[(h * kNumStates + s) * (T + 1) + p] of step 3 for one class.
class Feasibility {
public:
    Feasibility(const Databases& db, int64_t event_class) : T_(db.segments), good_(2 * kNumStates * (T_ + 1), 0) {
        for (int64_t p = T_ - 1; p >= 0; --p) {
            for (int h = 0; h < 2; ++h) {
                for (int s = 0; s < kNumStates; ++s) {
                    const int64_t q = p + kLength[s];
                    const bool misplaced = (s == kStart1 && p != 0) || (s == kEnd1 && q != T_);
                    if (db.at(event_class, s).empty() || q > T_ || misplaced) continue;
                    const int started = (h || is_start(s)) ? 1 : 0;
                    bool ok = false;
                    if (q == T_) {
                        ok = started && is_terminal(s);
                    } else {
                        const Successors& next = kSuccessors[started][s];
                        for (int i = 0; i < next.count && !ok; ++i) ok = good(started, next.states[i], q);
                    }
                    good_[index(h, s, p)] = ok;
                }
            }
        }
    }

    bool good(int h, int s, int64_t p) const { return good_[index(h, s, p)] != 0; }

private:
    int64_t index(int h, int s, int64_t p) const { return (h * kNumStates + s) * (T_ + 1) + p; }

    int64_t T_;
    std::vector<uint8_t> good_;
};

// Covers segments first..stop-1 with two-segment states `two`, then `one` if the count is odd (step 2).
void add_stretch(std::vector<std::pair<int, int64_t>>& states, int two, int one, int64_t first, int64_t stop) {
    for (int64_t p = first; p < stop - 1; p += 2) states.emplace_back(two, p);
    if ((stop - first) % 2) states.emplace_back(one, stop - 1);
}

// The canonical (state, position) sequence of a video with one event run of >= 2 segments (step 2); false for
// any other video.
bool decompose(const int64_t* row, int64_t T, std::vector<std::pair<int, int64_t>>& states) {
    int64_t a = -1, b = -1, event_segments = 0;
    for (int64_t t = 0; t < T; ++t) {
        if (row[t] == kBackground) continue;
        if (a < 0) a = t;
        if (row[t] != row[a]) return false;
        b = t;
        ++event_segments;
    }
    if (event_segments < 2 || b - a + 1 != event_segments) return false;
    states.clear();
    if (a == 0) {
        states.emplace_back(kStart1, 0);
    } else {
        add_stretch(states, kBg2, kBg1, 0, a - 1);
        states.emplace_back(kStart2, a - 1);
    }
    add_stretch(states, kContinue2, kContinue1, a + 1, b);
    if (b == T - 1) {
        states.emplace_back(kEnd1, b);
    } else {
        states.emplace_back(kEnd2, b);
        add_stretch(states, kBg2, kBg1, b + 2, T);
    }
    return true;
}

void fuse_class(const LabelView& labels, const Databases& db, const TransitionCounts& counts,
                const Feasibility& table, int64_t event_class, int64_t per_class, uint64_t seed, const Output& out) {
    const int64_t T = labels.segments;
    SplitMix64 rng(derive_seed(seed, static_cast<uint64_t>(event_class)));
    std::vector<std::pair<int, int64_t>> chosen;
    chosen.reserve(T);
    for (int64_t i = 0; i < per_class; ++i) {
        const int64_t row = (event_class * per_class + i) * T;
        chosen.clear();
        int prev = kBegin;
        int64_t p = 0;
        int h = 0;
        while (p < T) {
            std::array<int, 4> candidates{};
            std::array<uint64_t, 4> weights{};
            uint64_t total = 0;
            int count = 0;
            const Successors& next = kSuccessors[h][prev];
            for (int k = 0; k < next.count; ++k) {
                const int s = next.states[k];
                if (!table.good(h, s, p)) continue;
                candidates[count] = s;
                weights[count] = static_cast<uint64_t>(counts.at(h, prev, p, s)) + 1;
                total += weights[count++];
            }
            uint64_t r = rng.below(total);
            int pick = 0;
            while (r >= weights[pick]) r -= weights[pick++];
            const int s = candidates[pick];
            chosen.emplace_back(s, p);
            p += kLength[s];
            h = (h || is_start(s)) ? 1 : 0;
            prev = s;
        }
        for (const auto& [s, start] : chosen) {
            const std::vector<int64_t>& entries = db.at(event_class, s);
            const int64_t flat = entries[rng.below(entries.size())];
            const int64_t src_video = flat / T;
            const int64_t src_segment = flat % T;
            for (int64_t k = 0; k < kLength[s]; ++k) {
                const int64_t at = row + start + k;
                out.video[at] = src_video;
                out.segment[at] = src_segment + k;
                out.label[at] = labels.row(src_video)[src_segment + k];
                out.state[at] = s;
            }
        }
    }
}

}  // namespace

Databases build_databases(const LabelView& labels) {
    const int64_t T = labels.segments;
    Databases db;
    db.segments = T;
    db.entries.assign(kNumEventClasses * kNumStates, {});
    std::vector<int64_t> classes;
    for (int64_t v = 0; v < labels.videos; ++v) {
        const int64_t* row = labels.row(v);
        labels.event_classes(v, classes);
        for (int64_t e : classes) db.present[e] = true;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t flat = v * T + t;
            const int64_t label = row[t];
            const bool has_next = t + 1 < T;
            const int64_t next = has_next ? row[t + 1] : -1;
            if (label == kBackground) {
                for (int64_t e : classes) {
                    db.entries[e * kNumStates + kBg1].push_back(flat);
                    if (next == kBackground) db.entries[e * kNumStates + kBg2].push_back(flat);
                }
                if (has_next && next != kBackground) db.entries[next * kNumStates + kStart2].push_back(flat);
                continue;
            }
            std::vector<int64_t>* states = &db.entries[label * kNumStates];
            if (t == 0) states[kStart1].push_back(flat);
            if (t > 0 && t < T - 1 && row[t - 1] == label && next == label) states[kContinue1].push_back(flat);
            if (t > 0 && t < T - 2 && row[t - 1] == label && next == label && row[t + 2] == label) {
                states[kContinue2].push_back(flat);
            }
            if (t == T - 1) states[kEnd1].push_back(flat);
            if (next == kBackground) states[kEnd2].push_back(flat);
        }
    }
    return db;
}

TransitionCounts count_transitions(const LabelView& labels) {
    TransitionCounts counts(labels.segments);
    std::vector<std::pair<int, int64_t>> states;
    states.reserve(labels.segments);
    for (int64_t v = 0; v < labels.videos; ++v) {
        if (!decompose(labels.row(v), labels.segments, states)) continue;
        int prev = kBegin;
        int h = 0;
        for (const auto& [s, p] : states) {
            ++counts.at(h, prev, p, s);
            prev = s;
            h = (h || is_start(s)) ? 1 : 0;
        }
    }
    return counts;
}

void fuse(const LabelView& labels, int64_t per_class, uint64_t seed, int threads, const Output& out) {
    if (per_class < 1) throw std::invalid_argument("per_class must be >= 1, got " + std::to_string(per_class));
    const Databases db = build_databases(labels);
    const TransitionCounts counts = count_transitions(labels);
    std::vector<Feasibility> tables;
    tables.reserve(kNumEventClasses);
    for (int64_t e = 0; e < kNumEventClasses; ++e) {
        if (!db.present[e]) throw ClassError(e, true);
        tables.emplace_back(db, e);
        bool any = false;
        const Successors& first = kSuccessors[0][kBegin];
        for (int k = 0; k < first.count; ++k) any = any || tables.back().good(0, first.states[k], 0);
        if (!any) throw ClassError(e, false);
    }
    const int workers = std::max(1, std::min<int>(threads, kNumEventClasses));
    auto run = [&](int worker) {
        for (int64_t e = worker; e < kNumEventClasses; e += workers) {
            fuse_class(labels, db, counts, tables[e], e, per_class, seed, out);
        }
    };
    if (workers == 1) {
        run(0);
        return;
    }
    std::vector<std::thread> pool;
    for (int w = 1; w < workers; ++w) pool.emplace_back(run, w);
    run(0);
    for (std::thread& worker : pool) worker.join();
}

}  // namespace avel::smb
