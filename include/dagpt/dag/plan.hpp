// DagPlan: the fixed-size tensor plan of one computation graph per token (REFERENCE.md §1).
//   V_mag  [..., N]     magnitude of every node (>= 0)
//   V_sign [..., N]     sign of every node (+-1 in targets, continuous in predictions)
//   O      [..., d, N]  O[s, j] = signed coefficient of node j in step s
//   G      [..., d]     domain gate per step: 0 = log domain (* /), 1 = linear domain (+ - neg)
// N = n_init + d: slots [0, n_init) hold the literals, slot n_init + s the result of step s; the value
// of the plan is slot N - 1. The reference uses n_init = d; HEAD uses n_init = d + 1 (an option here).
// Leading axes ([B, T] for a batch) are free.
#pragma once

#include <cstdint>

#include "dagpt/core/tensor.hpp"

namespace dagpt::dag {

// The plan layout: depth d and the number of initial (literal) slots.
struct Layout {
  int depth = 4;
  int n_init = 4;  // d (reference) or d + 1 (HEAD)

  static Layout reference(int d) { return {d, d}; }
  static Layout head(int d) { return {d, d + 1}; }
  int nodes() const { return n_init + depth; }
};

template <typename T>
struct DagPlan {
  Tensor<T> V_mag;   // [..., N]
  Tensor<T> V_sign;  // [..., N]
  Tensor<T> O;       // [..., d, N]
  Tensor<T> G;       // [..., d]

  int depth() const { return static_cast<int>(G.size(-1)); }
  int nodes() const { return static_cast<int>(V_mag.size(-1)); }
  Layout layout() const { return {depth(), nodes() - depth()}; }
  // The leading (batch) shape, e.g. [B, T].
  Shape batch_shape() const { return Shape(G.shape().begin(), G.shape().end() - 1); }
  std::int64_t count() const { return batch_shape().numel(); }

  // The zero plan (REFERENCE §1) for invalid or padding positions: V_mag 0, V_sign 1, O 0, G 1.
  static DagPlan zeros(const Shape& batch, Layout layout) {
    if (layout.depth < 1 || layout.n_init < 1) {
      dagpt::detail::raise<ValueError>("DagPlan: depth {} and n_init {} must be >= 1", layout.depth,
                                       layout.n_init);
    }
    auto with = [&batch](std::initializer_list<std::int64_t> tail) {
      Shape s = batch;
      for (auto v : tail) s.push_back(v);
      return s;
    };
    const std::int64_t n = layout.nodes();
    return {Tensor<T>::zeros(with({n})), Tensor<T>::ones(with({n})),
            Tensor<T>::zeros(with({layout.depth, n})), Tensor<T>::ones(with({layout.depth}))};
  }

  // Throws a ShapeError naming the tensor and both shapes unless the four shapes agree.
  void check(const char* op) const {
    const int d = G.dim() > 0 ? depth() : 0;
    if (G.dim() < 1 || d < 1)
      dagpt::detail::raise<ShapeError>("{}: G must be [..., d] with d >= 1, got {}", op, G.shape().str());
    const Shape b = batch_shape();
    auto expect = [&](const Tensor<T>& t, const char* name, std::initializer_list<std::int64_t> tail) {
      Shape s = b;
      for (auto v : tail) s.push_back(v);
      if (t.shape() != s) {
        dagpt::detail::raise<ShapeError>("{}: {} has shape {}, expected {} (from G {} and V_mag {})", op,
                                         name, t.shape().str(), s.str(), G.shape().str(),
                                         V_mag.shape().str());
      }
    };
    const std::int64_t n = V_mag.dim() > 0 ? V_mag.size(-1) : 0;
    if (n <= d) {
      dagpt::detail::raise<ShapeError>(
          "{}: V_mag has {} nodes for depth {}; a plan needs more nodes than steps", op, n, d);
    }
    expect(V_mag, "V_mag", {n});
    expect(V_sign, "V_sign", {n});
    expect(O, "O", {d, n});
  }

  template <typename U>
  DagPlan<U> to() const {
    return {V_mag.template to<U>(), V_sign.template to<U>(), O.template to<U>(), G.template to<U>()};
  }
};

}  // namespace dagpt::dag
