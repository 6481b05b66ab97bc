// pybind11 entry point of avel_fast._sampler (numpy in/out, no torch ABI).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "rng.hpp"

namespace py = pybind11;

namespace {

py::array_t<uint64_t> splitmix64_stream(uint64_t seed, py::ssize_t n) {
    if (n < 0) throw py::value_error("n must be >= 0, got " + std::to_string(n));
    py::array_t<uint64_t> out(n);
    auto o = out.mutable_unchecked<1>();
    avel::SplitMix64 rng(seed);
    for (py::ssize_t i = 0; i < n; ++i) o(i) = rng.next();
    return out;
}

py::array_t<int64_t> below_stream(uint64_t seed, py::array_t<int64_t, py::array::c_style | py::array::forcecast> bounds) {
    if (bounds.ndim() != 1) throw py::value_error("bounds must be 1-D");
    auto b = bounds.unchecked<1>();
    py::array_t<int64_t> out(b.shape(0));
    auto o = out.mutable_unchecked<1>();
    avel::SplitMix64 rng(seed);
    for (py::ssize_t i = 0; i < b.shape(0); ++i) {
        if (b(i) < 1) throw py::value_error("bounds must be >= 1, got " + std::to_string(b(i)) + " at " + std::to_string(i));
        o(i) = static_cast<int64_t>(rng.below(static_cast<uint64_t>(b(i))));
    }
    return out;
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
}
