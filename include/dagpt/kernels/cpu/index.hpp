// Indexing kernels: gather, index_select, scatter_add, index_add, concat, stack. Index tensors are
// Tensor<int64_t>; every index is validated before any work, and a bad one is an IndexError naming its
// position and value.
#pragma once

#include <cstring>
#include <vector>

#include "dagpt/core/tensor.hpp"
#include "dagpt/kernels/cpu/reduce.hpp"

namespace dagpt {

namespace detail {
// Every value of `index` must lie in [0, bound).
inline void check_indices(const Tensor<std::int64_t>& index, std::int64_t bound, const char* op) {
  const Tensor<std::int64_t> c = index.contiguous();
  const std::int64_t* p = c.data();
  for (std::int64_t i = 0; i < c.numel(); ++i) {
    if (p[i] < 0 || p[i] >= bound) {
      raise<IndexError>(
          "{}: index {} at flat position {} of the index tensor (shape {}) is out of range [0, {})", op, p[i],
          i, index.shape().str(), bound);
    }
  }
}

// The gather/scatter shape rule: same number of dimensions, index extents within the data's except on
// `axis`.
template <typename T>
void check_gather_shapes(const Tensor<T>& data, int axis, const Tensor<std::int64_t>& index, const char* op) {
  if (index.dim() != data.dim()) {
    raise<ShapeError>("{}: index of shape {} needs as many dimensions as the data of shape {}", op,
                      index.shape().str(), data.shape().str());
  }
  for (int d = 0; d < data.dim(); ++d) {
    if (d != axis && index.shape()[d] > data.shape()[d]) {
      raise<ShapeError>("{}: index shape {} exceeds data shape {} on axis {}", op, index.shape().str(),
                        data.shape().str(), d);
    }
  }
}

// `t` seen with index's shape and a zero stride on `axis` (its offsets then exclude that axis).
template <typename T>
Shape strides_without_axis(const Tensor<T>& t, int axis) {
  Shape s = t.strides();
  s[axis] = 0;
  return s;
}
}  // namespace detail

// out[..., i, ...] = a[..., index[..., i, ...], ...] along axis (torch.gather); out has index's shape.
template <typename T>
Tensor<T> gather(const Tensor<T>& a, std::int64_t axis, const Tensor<std::int64_t>& index) {
  check_cpu(a, "gather");
  check_same_device(a, index, "gather");
  const int ax = wrap_axis(axis, a.dim(), "gather");
  detail::check_gather_shapes(a, ax, index, "gather");
  detail::check_indices(index, a.shape()[ax], "gather");
  Tensor<T> out = Tensor<T>::empty(index.shape());
  const T* src = a.storage()->data();
  const std::int64_t* ip = index.storage()->data();
  T* o = out.data();
  const std::int64_t step = a.strides()[ax];
  for_each_row<3>(index.shape(), {out.strides(), index.strides(), detail::strides_without_axis(a, ax)},
                  {0, index.offset(), a.offset()},
                  [&](const Offsets<3>& off, std::int64_t n, const Offsets<3>& st) {
                    for (std::int64_t i = 0; i < n; ++i) {
                      o[off[0] + i * st[0]] = src[off[2] + i * st[2] + ip[off[1] + i * st[1]] * step];
                    }
                  });
  return out;
}

// A copy of base with src added at the places index names along axis (torch.scatter_add):
// out[..., index[..., i, ...], ...] += src[..., i, ...]. Repeated indices accumulate.
template <typename T>
Tensor<T> scatter_add(const Tensor<T>& base, std::int64_t axis, const Tensor<std::int64_t>& index,
                      const Tensor<T>& src) {
  check_cpu(base, "scatter_add");
  check_same_device(base, index, "scatter_add");
  check_same_device(base, src, "scatter_add");
  const int ax = wrap_axis(axis, base.dim(), "scatter_add");
  detail::check_gather_shapes(base, ax, index, "scatter_add");
  detail::check_gather_shapes(src, ax, index, "scatter_add");
  detail::check_indices(index, base.shape()[ax], "scatter_add");
  Tensor<T> out = base.clone();
  T* o = out.data();
  const T* s = src.storage()->data();
  const std::int64_t* ip = index.storage()->data();
  const std::int64_t step = out.strides()[ax];
  for_each_row<3>(
      index.shape(), {detail::strides_without_axis(out, ax), index.strides(), src.strides()},
      {0, index.offset(), src.offset()},
      [&](const Offsets<3>& off, std::int64_t n, const Offsets<3>& st) {
        for (std::int64_t i = 0; i < n; ++i)
          o[off[0] + i * st[0] + ip[off[1] + i * st[1]] * step] += s[off[2] + i * st[2]];
      },
      /*serial=*/true);
  return out;
}

// The slices of a along axis at the given 1-D indices, in order (torch.index_select).
template <typename T>
Tensor<T> index_select(const Tensor<T>& a, std::int64_t axis, const Tensor<std::int64_t>& indices) {
  check_cpu(a, "index_select");
  check_same_device(a, indices, "index_select");
  const int ax = wrap_axis(axis, a.dim(), "index_select");
  if (indices.dim() != 1) {
    detail::raise<ShapeError>("index_select: indices must be 1-D, got shape {}", indices.shape().str());
  }
  detail::check_indices(indices, a.shape()[ax], "index_select");
  const Tensor<T> c = a.contiguous();
  const Tensor<std::int64_t> idx = indices.contiguous();
  Shape so = c.shape();
  so[ax] = idx.numel();
  Tensor<T> out = Tensor<T>::empty(so);
  const detail::AxisSplit sp = detail::split_axis(c.shape(), ax);
  const std::int64_t m = idx.numel();
  const std::int64_t* ip = idx.data();
  parallel_for(sp.outer * m, out.numel(), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t o = r / m;
      const std::int64_t j = r % m;
      std::memcpy(out.data() + r * sp.inner, c.data() + (o * sp.n + ip[j]) * sp.inner,
                  static_cast<std::size_t>(sp.inner) * sizeof(T));
    }
  });
  return out;
}

// A copy of base with the slices of src added at the 1-D indices along axis (the backward of
// index_select and of an embedding lookup: only the used rows are touched).
template <typename T>
Tensor<T> index_add(const Tensor<T>& base, std::int64_t axis, const Tensor<std::int64_t>& indices,
                    const Tensor<T>& src) {
  check_cpu(base, "index_add");
  const int ax = wrap_axis(axis, base.dim(), "index_add");
  if (indices.dim() != 1) {
    detail::raise<ShapeError>("index_add: indices must be 1-D, got shape {}", indices.shape().str());
  }
  Shape want = base.shape();
  want[ax] = indices.numel();
  if (src.shape() != want) {
    detail::raise<ShapeError>(
        "index_add: src of shape {} should have shape {} (base {} with {} indices on axis {})",
        src.shape().str(), want.str(), base.shape().str(), indices.numel(), ax);
  }
  detail::check_indices(indices, base.shape()[ax], "index_add");
  Tensor<T> out = base.clone();
  const Tensor<T> s = src.contiguous();
  const Tensor<std::int64_t> idx = indices.contiguous();
  const detail::AxisSplit sp = detail::split_axis(out.shape(), ax);
  const std::int64_t m = idx.numel();
  // Parallel over the outer blocks (never two threads on one destination row).
  parallel_for(sp.outer, s.numel(), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t o = b; o < e; ++o) {
      for (std::int64_t j = 0; j < m; ++j) {
        T* dst = out.data() + (o * sp.n + idx.data()[j]) * sp.inner;
        const T* from = s.data() + (o * m + j) * sp.inner;
#pragma omp simd
        for (std::int64_t i = 0; i < sp.inner; ++i) dst[i] += from[i];
      }
    }
  });
  return out;
}

// Joins tensors along an existing axis; all other extents must agree.
template <typename T>
Tensor<T> concat(const std::vector<Tensor<T>>& parts, std::int64_t axis) {
  if (parts.empty()) detail::raise<ValueError>("concat: no tensors given");
  const Tensor<T>& first = parts.front();
  const int ax = wrap_axis(axis, first.dim(), "concat");
  Shape so = first.shape();
  so[ax] = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Tensor<T>& p = parts[i];
    check_cpu(p, "concat");
    check_same_device(first, p, "concat");
    bool ok = p.dim() == first.dim();
    for (int d = 0; ok && d < p.dim(); ++d) ok = d == ax || p.shape()[d] == first.shape()[d];
    if (!ok) {
      detail::raise<ShapeError>(
          "concat: tensor {} has shape {}, which does not match shape {} outside axis {}", i, p.shape().str(),
          first.shape().str(), ax);
    }
    so[ax] += p.shape()[ax];
  }
  Tensor<T> out = Tensor<T>::empty(so);
  std::int64_t at = 0;
  for (const Tensor<T>& p : parts) {
    out.narrow(ax, at, p.shape()[ax]).copy_(p);
    at += p.shape()[ax];
  }
  return out;
}

// Joins equally shaped tensors along a new axis.
template <typename T>
Tensor<T> stack(const std::vector<Tensor<T>>& parts, std::int64_t axis) {
  if (parts.empty()) detail::raise<ValueError>("stack: no tensors given");
  const int ax = wrap_axis(axis, parts.front().dim() + 1, "stack");
  std::vector<Tensor<T>> u;
  u.reserve(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].shape() != parts.front().shape()) {
      detail::raise<ShapeError>("stack: tensor {} has shape {}, tensor 0 has shape {}", i,
                                parts[i].shape().str(), parts.front().shape().str());
    }
    u.push_back(parts[i].unsqueeze(ax));
  }
  return concat(u, ax);
}

}  // namespace dagpt
