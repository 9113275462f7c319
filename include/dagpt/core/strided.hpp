// The one strided loop behind copies and elementwise kernels: it walks K operands that share a shape
// but have their own strides, one innermost row at a time, after merging dimensions that are
// contiguous for every operand. Large work is split over OpenMP threads; small work stays serial.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "dagpt/core/shape.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dagpt {

// Work below this many elements runs on one thread (spawning threads costs more than it saves).
inline constexpr std::int64_t kParallelGrain = 32768;

// True when a loop over `n` elements should be split over threads.
inline bool parallel_worthwhile(std::int64_t n) {
#ifdef _OPENMP
  return n >= kParallelGrain && omp_get_max_threads() > 1 && !omp_in_parallel();
#else
  (void)n;
  return false;
#endif
}

template <std::size_t K>
using Offsets = std::array<std::int64_t, K>;

// Merges dimensions that every operand can walk as one, and drops extents of 1. After this, shape has
// at least one dimension (a scalar becomes [1]).
template <std::size_t K>
void coalesce(Shape& shape, std::array<Shape, K>& strides) {
  Shape s;
  std::array<Shape, K> st;
  for (int i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    bool merge = s.size() > 0;
    for (std::size_t k = 0; k < K && merge; ++k) {
      merge = st[k][st[k].size() - 1] == strides[k][i] * shape[i];
    }
    if (merge) {
      s[s.size() - 1] *= shape[i];
      for (std::size_t k = 0; k < K; ++k) st[k][st[k].size() - 1] = strides[k][i];
    } else {
      s.push_back(shape[i]);
      for (std::size_t k = 0; k < K; ++k) st[k].push_back(strides[k][i]);
    }
  }
  if (s.size() == 0) {
    s.push_back(1);
    for (std::size_t k = 0; k < K; ++k) st[k].push_back(0);
  }
  shape = s;
  strides = st;
}

// Calls row(offsets, n, inner_strides) for every innermost row of `shape`: offsets are the element
// offsets of the row's first element in each operand (base offsets added), n the row length.
// Rows may run concurrently on different threads; each element is visited exactly once.
// With `serial` set, rows run in order on the calling thread (for scatters whose rows may collide).
template <std::size_t K, typename Row>
void for_each_row(Shape shape, std::array<Shape, K> strides, const Offsets<K>& base, Row&& row,
                  bool serial = false) {
  const std::int64_t total = shape.numel();
  if (total == 0) return;
  coalesce(shape, strides);
  const int nd = shape.size();
  const std::int64_t inner = shape[nd - 1];
  Offsets<K> inner_strides;
  for (std::size_t k = 0; k < K; ++k) inner_strides[k] = strides[k][nd - 1];
  const std::int64_t rows = total / inner;
  const bool par = !serial && parallel_worthwhile(total);

  if (rows == 1) {  // one long row: split it into chunks
    if (!par) {
      row(base, inner, inner_strides);
      return;
    }
    constexpr std::int64_t kChunk = 8192;
    const std::int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      Offsets<K> off;
      for (std::size_t k = 0; k < K; ++k) off[k] = base[k] + c * kChunk * inner_strides[k];
      row(off, std::min(kChunk, inner - c * kChunk), inner_strides);
    }
    return;
  }

  // Walks rows [r0, r1): the multi-index of r0 is decoded once, then incremented like an odometer.
  auto run = [&](std::int64_t r0, std::int64_t r1) {
    std::array<std::int64_t, kMaxDims> idx{};
    Offsets<K> off = base;
    std::int64_t r = r0;
    for (int d = nd - 2; d >= 0; --d) {
      idx[static_cast<std::size_t>(d)] = r % shape[d];
      r /= shape[d];
      for (std::size_t k = 0; k < K; ++k) off[k] += idx[static_cast<std::size_t>(d)] * strides[k][d];
    }
    for (std::int64_t i = r0; i < r1; ++i) {
      row(off, inner, inner_strides);
      for (int d = nd - 2; d >= 0; --d) {
        auto& x = idx[static_cast<std::size_t>(d)];
        ++x;
        for (std::size_t k = 0; k < K; ++k) off[k] += strides[k][d];
        if (x < shape[d]) break;
        for (std::size_t k = 0; k < K; ++k) off[k] -= x * strides[k][d];
        x = 0;
      }
    }
  };

  if (!par) {
    run(0, rows);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel
  {
    const std::int64_t nt = omp_get_num_threads();
    const std::int64_t t = omp_get_thread_num();
    run(rows * t / nt, rows * (t + 1) / nt);
  }
#endif
}

// f(0, n) on this thread where splitting [0, n) would not pay (`work`, elements touched, is small, or n is
// 1); true when it ran (or n is 0).
template <typename F>
bool ran_serially(std::int64_t n, std::int64_t work, F& f) {
  if (n <= 0) return true;
  if (parallel_worthwhile(work) && n > 1) return false;
  f(std::int64_t{0}, n);
  return true;
}

// Parallel loop over [0, n) in contiguous blocks, serial when `work` (elements touched) is small.
template <typename F>
void parallel_for(std::int64_t n, std::int64_t work, F&& f) {
  if (ran_serially(n, work, f)) return;
#ifdef _OPENMP
#pragma omp parallel
  {
    const std::int64_t nt = omp_get_num_threads();
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t b = n * t / nt;
    const std::int64_t e = n * (t + 1) / nt;
    if (b < e) f(b, e);
  }
#endif
}

// [0, n) over the threads, f(b, e) per run of consecutive indices: each thread takes its own share (as
// parallel_for: the same share in two calls of the same n, whose data its cache may still hold) from the
// front, a chunk at a time, then helps the others with the rest of theirs. A thread that the machine slows
// down (a shared or virtual CPU) would else make the others wait at the region's end: 10-25% of the DAG
// executor's backward pass on this project's 2-core VM.
template <typename F>
void parallel_blocks(std::int64_t n, std::int64_t work, F&& f) {
  if (ran_serially(n, work, f)) return;
#ifdef _OPENMP
  struct alignas(64) Share {  // a cache line each: the owner's claims do not disturb the others'
    std::atomic<std::int64_t> next{0};
    std::int64_t end = 0;
  };
  const int nt = omp_get_max_threads();
  std::vector<Share> shares(static_cast<std::size_t>(nt));
  for (int t = 0; t < nt; ++t) {
    shares[static_cast<std::size_t>(t)].next = n * t / nt;
    shares[static_cast<std::size_t>(t)].end = n * (t + 1) / nt;
  }
  const std::int64_t chunk = std::clamp<std::int64_t>(n / (16 * nt), 1, 64);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    for (int k = 0; k < nt; ++k) {  // its own share first (k = 0), then the others'
      Share& s = shares[static_cast<std::size_t>((t + k) % nt)];
      for (std::int64_t b; (b = s.next.fetch_add(chunk, std::memory_order_relaxed)) < s.end;)
        f(b, std::min(b + chunk, s.end));
    }
  }
#endif
}

}  // namespace dagpt
