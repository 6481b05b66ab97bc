// SMB video fusion: databases (step 1), feasibility (step 2), class checks (step 3), generation (step 4),
// mirroring avel_fast/reference/augment.py.
#include "smb.hpp"

#include <algorithm>
#include <thread>

#include "rng.hpp"

namespace avel::smb {
namespace {

constexpr int kBegin = kNumStates;

struct Successors {
    std::array<int, 4> states;
    int count;
};

// Indexed by state, then kBegin; same order as SMB_SUCCESSORS in the twin.
constexpr Successors kAfterBackground{{kBg1, kBg2, kStart2, 0}, 3};
constexpr Successors kInsideEvent{{kContinue1, kContinue2, kEnd1, kEnd2}, 4};
constexpr std::array<Successors, kNumStates + 1> kSuccessors = {
    kAfterBackground, kAfterBackground, kInsideEvent, kInsideEvent, kInsideEvent, kInsideEvent,
    Successors{{0, 0, 0, 0}, 0}, kAfterBackground, Successors{{kBg1, kBg2, kStart1, kStart2}, 4},
};

bool is_start(int s) { return s == kStart1 || s == kStart2; }
bool is_terminal(int s) { return s == kBg1 || s == kBg2 || s == kEnd1 || s == kEnd2; }

// good[(h * kNumStates + s) * (T + 1) + p] of step 2 for one class.
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
                        const Successors& next = kSuccessors[s];
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

void fuse_class(const LabelView& labels, const Databases& db, const Feasibility& table, int64_t event_class,
                int64_t per_class, uint64_t seed, const Output& out) {
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
            int count = 0;
            const Successors& next = kSuccessors[prev];
            for (int k = 0; k < next.count; ++k) {
                if (table.good(h, next.states[k], p)) candidates[count++] = next.states[k];
            }
            const int s = candidates[rng.below(static_cast<uint64_t>(count))];
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

void fuse(const LabelView& labels, int64_t per_class, uint64_t seed, int threads, const Output& out) {
    if (per_class < 1) throw std::invalid_argument("per_class must be >= 1, got " + std::to_string(per_class));
    const Databases db = build_databases(labels);
    std::vector<Feasibility> tables;
    tables.reserve(kNumEventClasses);
    for (int64_t e = 0; e < kNumEventClasses; ++e) {
        if (!db.present[e]) throw ClassError(e, true);
        tables.emplace_back(db, e);
        bool any = false;
        const Successors& first = kSuccessors[kBegin];
        for (int k = 0; k < first.count; ++k) any = any || tables.back().good(0, first.states[k], 0);
        if (!any) throw ClassError(e, false);
    }
    const int workers = std::max(1, std::min<int>(threads, kNumEventClasses));
    auto run = [&](int worker) {
        for (int64_t e = worker; e < kNumEventClasses; e += workers) {
            fuse_class(labels, db, tables[e], e, per_class, seed, out);
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
