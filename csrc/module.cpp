// pybind11 entry point of avel_fast._sampler (numpy in/out, no torch ABI): the shared generator and the two
// segment-recombination samplers of docs/augmentations.md. Input errors raise ValueError with the messages of the
// Python twin, avel_fast/reference/augment.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <limits>
#include <string>

#include "labels.hpp"
#include "replica.hpp"
#include "rng.hpp"
#include "smb.hpp"

namespace py = pybind11;

namespace {

using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

py::array_t<uint64_t> splitmix64_stream(uint64_t seed, py::ssize_t n) {
    if (n < 0) throw py::value_error("n must be >= 0, got " + std::to_string(n));
    py::array_t<uint64_t> out(n);
    auto o = out.mutable_unchecked<1>();
    avel::SplitMix64 rng(seed);
    for (py::ssize_t i = 0; i < n; ++i) o(i) = rng.next();
    return out;
}

py::array_t<int64_t> below_stream(uint64_t seed, Int64Array bounds) {
    if (bounds.ndim() != 1) throw py::value_error("bounds must be 1-D");
    auto b = bounds.unchecked<1>();
    py::array_t<int64_t> out(b.shape(0));
    auto o = out.mutable_unchecked<1>();
    avel::SplitMix64 rng(seed);
    for (py::ssize_t i = 0; i < b.shape(0); ++i) {
        if (b(i) < 1) {
            throw py::value_error("bounds must be >= 1, got " + std::to_string(b(i)) + " at " + std::to_string(i));
        }
        o(i) = static_cast<int64_t>(rng.below(static_cast<uint64_t>(b(i))));
    }
    return out;
}

// `array` as C-contiguous int64 after checking it holds integers (any dtype when empty) and has rank `ndim`.
Int64Array integer_array(const py::array& array, const char* name, py::ssize_t ndim, const char* rank_message) {
    const char kind = array.dtype().kind();
    if (kind != 'i' && kind != 'u' && array.size() > 0) {
        const std::string dtype = py::str(array.dtype());
        throw py::value_error(std::string(name) + " must be an integer array, got dtype " + dtype);
    }
    if (array.ndim() != ndim) throw py::value_error(std::string(name) + rank_message + std::to_string(array.ndim()));
    return Int64Array::ensure(array);
}

avel::LabelView label_view(const Int64Array& labels) {
    return avel::checked_labels(labels.data(), labels.shape(0), labels.shape(1));
}

Int64Array labels_array(const py::array& labels) {
    return integer_array(labels, "labels", 2, " must have rank 2 [videos, segments], got rank ");
}

py::tuple smb_fusion(const py::array& labels_in, int64_t per_class, uint64_t seed, int threads) {
    const Int64Array labels = labels_array(labels_in);
    const avel::LabelView view = label_view(labels);
    if (per_class < 1) throw py::value_error("per_class must be >= 1, got " + std::to_string(per_class));
    if (per_class > std::numeric_limits<py::ssize_t>::max() / (avel::kNumEventClasses * view.segments)) {
        throw py::value_error("per_class " + std::to_string(per_class) +
                              " is too large: the output would not fit in memory");
    }
    const py::ssize_t rows = avel::kNumEventClasses * per_class;
    py::array_t<int64_t> video({rows, static_cast<py::ssize_t>(view.segments)});
    py::array_t<int64_t> segment(video.request().shape), label(video.request().shape), state(video.request().shape);
    const avel::smb::Output out{video.mutable_data(), segment.mutable_data(), label.mutable_data(),
                                state.mutable_data()};
    try {
        py::gil_scoped_release release;
        avel::smb::fuse(view, per_class, seed, threads, out);
    } catch (const avel::smb::ClassError& error) {
        const py::object names = py::module_::import("avel_fast.constants").attr("CLASS_NAMES");
        const std::string name = py::str(names[py::int_(error.event_class)]);
        const std::string which = "event class " + std::to_string(error.event_class) + " (" + name + ")";
        if (error.absent) throw py::value_error(which + " has no videos in labels: SMB fusion needs every event class");
        throw py::value_error(which + ": its videos yield no valid " + std::to_string(view.segments) +
                              "-segment SMB state sequence");
    }
    return py::make_tuple(video, segment, label, state);
}

py::array_t<int64_t> smb_database_sizes(const py::array& labels_in) {
    const Int64Array labels = labels_array(labels_in);
    const avel::smb::Databases db = avel::smb::build_databases(label_view(labels));
    py::array_t<int64_t> sizes({static_cast<py::ssize_t>(avel::kNumEventClasses),
                                static_cast<py::ssize_t>(avel::smb::kNumStates)});
    int64_t* out = sizes.mutable_data();
    for (size_t i = 0; i < db.entries.size(); ++i) out[i] = static_cast<int64_t>(db.entries[i].size());
    return sizes;
}

py::array_t<int64_t> smb_transition_counts(const py::array& labels_in) {
    const Int64Array labels = labels_array(labels_in);
    const avel::LabelView view = label_view(labels);
    const avel::smb::TransitionCounts counts = avel::smb::count_transitions(view);
    const auto states = static_cast<py::ssize_t>(avel::smb::kNumStates);
    py::array_t<int64_t> out({py::ssize_t{2}, states + 1, static_cast<py::ssize_t>(view.segments), states});
    std::copy(counts.flat().begin(), counts.flat().end(), out.mutable_data());
    return out;
}

constexpr const char* kPieceTypeNames[avel::replica::kNumPieceTypes] = {
    "start_border", "start_open", "end_border", "end_open", "continue", "background"};

py::dict replica_database_sizes(const avel::replica::Sampler& sampler) {
    const std::vector<int64_t> sizes = sampler.database_sizes();
    py::dict out;
    for (int type = 0; type < avel::replica::kNumPieceTypes; ++type) {
        py::array_t<int64_t> per_class(avel::kNumEventClasses);
        std::copy_n(sizes.begin() + type * avel::kNumEventClasses, avel::kNumEventClasses, per_class.mutable_data());
        out[kPieceTypeNames[type]] = per_class;
    }
    return out;
}

py::tuple replica_sample(const avel::replica::Sampler& sampler, const py::array& batch_in, uint64_t seed) {
    const Int64Array batch = integer_array(batch_in, "batch_video_idx", 1, " must be 1-D, got rank ");
    const py::ssize_t size = batch.shape(0);
    py::array_t<int64_t> video({size, static_cast<py::ssize_t>(sampler.segments())});
    py::array_t<int64_t> segment(video.request().shape);
    sampler.sample(batch.data(), size, seed, video.mutable_data(), segment.mutable_data());
    return py::make_tuple(video, segment);
}

}  // namespace

PYBIND11_MODULE(_sampler, m) {
    m.doc() = "avel_fast native sampler: shared SplitMix64 generator and the segment-recombination samplers";
    m.def("splitmix64_stream", &splitmix64_stream, py::arg("seed"), py::arg("n"),
          "The first n raw outputs of SplitMix64(seed).");
    m.def("below_stream", &below_stream, py::arg("seed"), py::arg("bounds"),
          "One unbiased draw in [0, bounds[i]) per entry, in order, from one SplitMix64(seed) stream.");
    m.def("derive_seed", &avel::derive_seed, py::arg("seed"), py::arg("stream"),
          "Seed of the independent stream `stream` under `seed`.");

    m.def("smb_fusion", &smb_fusion, py::arg("labels"), py::arg("per_class"), py::arg("seed"), py::arg("threads") = 1,
          "SMB video fusion (docs/augmentations.md#smb): (video_idx, segment_idx, labels, states), "
          "int64 [28*per_class, T] each.");
    m.def("smb_database_sizes", &smb_database_sizes, py::arg("labels"),
          "Instances per (event class, SMB state), int64 [28, 8].");
    m.def("smb_transition_counts", &smb_transition_counts, py::arg("labels"),
          "SMB transition counts of the labels' own state sequences, int64 [2, 9, T, 8].");
    py::class_<avel::replica::Sampler>(m, "ReplicaSampler",
                                       "Sub-event databases and replica plans (docs/augmentations.md#replicate).")
        .def(py::init([](const py::array& labels) {
                 const Int64Array array = labels_array(labels);
                 return avel::replica::Sampler(label_view(array));
             }),
             py::arg("labels"))
        .def("sample", &replica_sample, py::arg("batch_video_idx"), py::arg("seed"),
             "One replica per batch row: (video_idx, segment_idx), int64 [B, T] each.")
        .def("database_sizes", &replica_database_sizes, "Entries per sub-event type and event class, int64 [28] each.")
        .def_property_readonly("num_videos", &avel::replica::Sampler::videos)
        .def_property_readonly("num_segments", &avel::replica::Sampler::segments);
}
