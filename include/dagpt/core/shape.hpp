// Shape: up to 8 dimensions held inline (no heap), plus the helpers that every op needs: element
// counts, contiguous strides, axis wrapping and NumPy broadcasting.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "dagpt/core/error.hpp"

namespace dagpt {

inline constexpr int kMaxDims = 8;

// A list of at most kMaxDims extents (or strides); every extent is >= 0.
class Shape {
 public:
  using value_type = std::int64_t;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<std::int64_t>& dims) { assign(dims.begin(), dims.end()); }
  template <typename It>
  Shape(It first, It last) {
    assign(first, last);
  }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  std::int64_t operator[](int i) const { return d_[static_cast<std::size_t>(i)]; }
  std::int64_t& operator[](int i) { return d_[static_cast<std::size_t>(i)]; }
  const std::int64_t* begin() const { return d_.data(); }
  const std::int64_t* end() const { return d_.data() + n_; }
  std::int64_t* begin() { return d_.data(); }
  std::int64_t* end() { return d_.data() + n_; }
  std::int64_t back() const { return d_[static_cast<std::size_t>(n_ - 1)]; }

  // Product of the extents (1 for a scalar shape).
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < n_; ++i) n *= d_[static_cast<std::size_t>(i)];
    return n;
  }

  void push_back(std::int64_t v) {
    if (n_ == kMaxDims) detail::raise<ShapeError>("a shape has at most {} dimensions", kMaxDims);
    d_[static_cast<std::size_t>(n_++)] = v;
  }
  void insert(int pos, std::int64_t v) {
    push_back(0);
    for (int i = n_ - 1; i > pos; --i) d_[static_cast<std::size_t>(i)] = d_[static_cast<std::size_t>(i - 1)];
    d_[static_cast<std::size_t>(pos)] = v;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) d_[static_cast<std::size_t>(i)] = d_[static_cast<std::size_t>(i + 1)];
    --n_;
  }
  std::vector<std::int64_t> vec() const { return {begin(), end()}; }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.n_ == b.n_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

  std::string str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

 private:
  template <typename It>
  void assign(It first, It last) {
    n_ = 0;
    for (; first != last; ++first) {
      if (n_ == kMaxDims) detail::raise<ShapeError>("a shape has at most {} dimensions", kMaxDims);
      const auto v = static_cast<std::int64_t>(*first);
      d_[static_cast<std::size_t>(n_++)] = v;
    }
  }

  std::array<std::int64_t, kMaxDims> d_{};
  int n_ = 0;
};

// Row-major strides of a contiguous tensor of this shape.
inline Shape contiguous_strides(const Shape& shape) {
  Shape s = shape;
  std::int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= std::max<std::int64_t>(shape[i], 1);
  }
  return s;
}

// Wraps a possibly negative axis into [0, ndim); `op` names the caller in the error.
inline int wrap_axis(std::int64_t axis, int ndim, const char* op) {
  const std::int64_t w = axis < 0 ? axis + ndim : axis;
  if (w < 0 || w >= ndim) {
    detail::raise<IndexError>("{}: axis {} is out of range for a tensor of {} dimensions", op, axis, ndim);
  }
  return static_cast<int>(w);
}

// The NumPy broadcast of two shapes, or a ShapeError naming the op and both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int n = std::max(a.size(), b.size());
  Shape out;
  for (int i = 0; i < n; ++i) {
    const int ia = a.size() - n + i;
    const int ib = b.size() - n + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1;
    const std::int64_t db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      detail::raise<ShapeError>("{}: shapes {} and {} cannot be broadcast (dimension {}: {} vs {})", op,
                                a.str(), b.str(), i - n, da, db);
    }
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

}  // namespace dagpt

template <>
struct fmt::formatter<dagpt::Shape> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const dagpt::Shape& s, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
