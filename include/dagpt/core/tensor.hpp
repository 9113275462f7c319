// Tensor<T>: an n-dimensional view (shape, strides, offset) over shared storage on one device. Copies are
// shallow and share storage; clone() is the deep copy. Views (reshape, transpose, permute, narrow,
// select, unsqueeze, squeeze, expand) never copy. No autograd here: see autograd/var.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define DAGPT_HAVE_MMAP 1
#else
#define DAGPT_HAVE_MMAP 0
#endif

#include "dagpt/core/device.hpp"
#include "dagpt/core/error.hpp"
#include "dagpt/core/random.hpp"
#include "dagpt/core/shape.hpp"
#include "dagpt/core/strided.hpp"

namespace dagpt {

namespace detail {
// Large CPU buffers (>= 128 KB) are cached when freed and reused for the next allocation of the same size: a
// fresh buffer is fresh pages, and the page faults of first touch cost more than the op that fills it (a
// 16M-element add ran 4x slower). They are mapped from the OS directly (mmap where available), so that a
// buffer given back really leaves the process (malloc's heap would keep it). The cache never makes the
// process hold more than its peak of live large buffers: before a fresh mapping would push live + cached
// bytes past that peak, cached buffers (largest first) are unmapped; and a request that finds no buffer of
// its size takes a larger cached one, whose pages past the size are unmapped. So a training loop whose
// steps use the same sizes runs mostly from the cache, and its resident memory stays near the peak it needs.
// The cache also holds at most DAGPT_CPU_CACHE_MB megabytes (default 1024); empty_cpu_cache() releases it.
// Small buffers go straight to malloc. The bound is malloc's own first mmap threshold: between it and 1 MB,
// glibc's heap grew and shrank (brk) by such buffers on every call of a benchmark that alternated sizes
// (the DAG executor's exact and reference runs: 216,000 page faults, 1.4x the time of either run alone).
class CpuAllocator {
 public:
  // Never destroyed: tensors in static storage may outlive any static allocator object.
  static CpuAllocator& instance() {
    static auto* a = new CpuAllocator();
    return *a;
  }
  CpuAllocator(const CpuAllocator&) = delete;
  CpuAllocator& operator=(const CpuAllocator&) = delete;

  static std::size_t rounded(std::size_t bytes) {
    const std::size_t r = bytes < kCached ? 64 : 4096;
    return (std::max<std::size_t>(bytes, 1) + r - 1) / r * r;
  }
  void* allocate(std::size_t bytes) {
    const std::size_t n = rounded(bytes);
    if (n < kCached) {
      void* p = std::aligned_alloc(64, n);
      if (p == nullptr) {
        release();  // give the cache back and try once more
        p = std::aligned_alloc(64, n);
        if (p == nullptr) throw std::bad_alloc();
      }
      return p;
    }
    std::vector<std::pair<void*, std::size_t>> unmap;  // given back outside the lock
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(n);
      if (it != free_.end()) {
        p = it->second;
        free_.erase(it);
        cached_ -= n;
      } else if (auto big = free_.lower_bound(n); DAGPT_HAVE_MMAP && big != free_.end()) {
        // A larger cached buffer: keep its first n bytes (pages already there) and unmap the rest.
        p = big->second;
        const std::size_t s = big->first;
        free_.erase(big);
        cached_ -= s;
        unmap.emplace_back(static_cast<char*>(p) + n, s - n);
      } else {
        while (!free_.empty() && live_ + cached_ + n > peak_) {
          auto last = std::prev(free_.end());
          unmap.emplace_back(last->second, last->first);
          cached_ -= last->first;
          free_.erase(last);
        }
      }
      live_ += n;
      peak_ = std::max(peak_, live_ + cached_);
    }
    for (auto& [q, m] : unmap) unmap_pages(q, m);
    if (p == nullptr) {
      p = map_pages(n);
      if (p == nullptr) {
        release();
        p = map_pages(n);
        if (p == nullptr) {
          std::lock_guard<std::mutex> lock(mu_);
          live_ -= n;
          throw std::bad_alloc();
        }
      }
    }
    return p;
  }
  void deallocate(void* p, std::size_t bytes) {
    const std::size_t n = rounded(bytes);
    if (n < kCached) {
      std::free(p);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      live_ -= n;
      if (cached_ + n <= limit_) {
        free_.emplace(n, p);
        cached_ += n;
        return;
      }
    }
    unmap_pages(p, n);
  }
  void release() {
    std::multimap<std::size_t, void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [n, p] : blocks) unmap_pages(p, n);
  }
  std::size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

 private:
  static constexpr std::size_t kCached = std::size_t{128} << 10;
  CpuAllocator() {
    if (const char* env = std::getenv("DAGPT_CPU_CACHE_MB")) limit_ = std::strtoull(env, nullptr, 10) << 20U;
  }
  // Buffers of 2 MB and more start on a 2 MB boundary and ask for transparent huge pages (Linux's THP in
  // "madvise" mode, the usual default): their first touch then costs one page fault per 2 MB instead of
  // 512, which was ~8% of a training step's CPU time when the cache has to map fresh buffers.
  static void* map_pages(std::size_t n) {
#if DAGPT_HAVE_MMAP
    constexpr std::size_t huge = std::size_t{2} << 20;
    const std::size_t span = n >= huge ? n + huge : n;
    void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (span == n) return p;
    char* base = static_cast<char*>(p);
    char* start = base + (huge - reinterpret_cast<std::uintptr_t>(base) % huge) % huge;
    if (start > base) ::munmap(base, static_cast<std::size_t>(start - base));
    if (base + span > start + n) ::munmap(start + n, static_cast<std::size_t>(base + span - (start + n)));
#ifdef MADV_HUGEPAGE
    ::madvise(start, n, MADV_HUGEPAGE);  // advice only: ignored where THP is off
#endif
    return start;
#else
    return std::aligned_alloc(64, n);
#endif
  }
  static void unmap_pages(void* p, std::size_t n) {
#if DAGPT_HAVE_MMAP
    ::munmap(p, n);
#else
    (void)n;
    std::free(p);
#endif
  }
  std::mutex mu_;
  std::multimap<std::size_t, void*> free_;
  std::size_t cached_ = 0;
  std::size_t live_ = 0;  // large buffers handed out
  std::size_t peak_ = 0;  // the most large-buffer bytes held at once, live or cached
  std::size_t limit_ = std::size_t{1024} << 20U;
};
}  // namespace detail

// Frees the CPU buffers that dagpt keeps for reuse.
inline void empty_cpu_cache() { detail::CpuAllocator::instance().release(); }
// Bytes held by that cache.
inline std::size_t cpu_cache_bytes() { return detail::CpuAllocator::instance().cached_bytes(); }

// A flat, 64-byte aligned buffer of `size` elements on `device`. Uninitialized on creation.
template <typename T>
class Storage {
 public:
  Storage(std::int64_t size, Device device) : size_(size), device_(device) {
    if (!device.is_cpu()) {
      detail::raise<DeviceError>("cannot allocate on {}: this build of dagpt has no CUDA backend", device);
    }
    data_ = static_cast<T*>(detail::CpuAllocator::instance().allocate(bytes()));
  }
  ~Storage() { detail::CpuAllocator::instance().deallocate(data_, bytes()); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  T* data() const { return data_; }
  std::int64_t size() const { return size_; }
  Device device() const { return device_; }

 private:
  std::size_t bytes() const { return static_cast<std::size_t>(std::max<std::int64_t>(size_, 1)) * sizeof(T); }
  T* data_ = nullptr;
  std::int64_t size_ = 0;
  Device device_;
};

template <typename T>
class Tensor {
  static_assert(is_element_v<T>, "Tensor<T>: T must be float, double or std::int64_t");

 public:
  using value_type = T;

  // An empty 0-element 1-D tensor; useful as a placeholder (defined() is false).
  Tensor() = default;

  // ---- factories -------------------------------------------------------------------------------
  // Uninitialized contiguous tensor.
  static Tensor empty(const Shape& shape, Device device = Device::cpu()) {
    for (auto d : shape) {
      if (d < 0) detail::raise<ShapeError>("empty: negative extent in shape {}", shape.str());
    }
    Tensor t;
    t.storage_ = std::make_shared<Storage<T>>(shape.numel(), device);
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    return t;
  }
  static Tensor full(const Shape& shape, T value, Device device = Device::cpu()) {
    Tensor t = empty(shape, device);
    std::fill_n(t.data(), t.numel(), value);
    return t;
  }
  static Tensor zeros(const Shape& shape, Device device = Device::cpu()) { return full(shape, T(0), device); }
  static Tensor ones(const Shape& shape, Device device = Device::cpu()) { return full(shape, T(1), device); }
  // A 0-dimensional tensor holding one value.
  static Tensor scalar(T value) { return full(Shape{}, value); }
  // [start, end) by step, like numpy.arange.
  static Tensor arange(T start, T end, T step = T(1)) {
    if (step == T(0)) detail::raise<ValueError>("arange: step must not be 0");
    const double span = (static_cast<double>(end) - static_cast<double>(start)) / static_cast<double>(step);
    const auto n = static_cast<std::int64_t>(std::max(0.0, std::ceil(span)));
    Tensor t = empty({n});
    for (std::int64_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(start + static_cast<T>(i) * step);
    return t;
  }
  static Tensor arange(std::int64_t n) { return arange(T(0), static_cast<T>(n), T(1)); }
  // Copies `values` into a tensor of `shape` (whose element count must match).
  static Tensor from(const std::vector<T>& values, const Shape& shape) {
    if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
      detail::raise<ShapeError>("from: {} values do not fill shape {} ({} elements)", values.size(),
                                shape.str(), shape.numel());
    }
    Tensor t = empty(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }
  // A 1-D tensor of the values.
  static Tensor from(std::initializer_list<T> values) {
    return from(std::vector<T>(values), Shape{static_cast<std::int64_t>(values.size())});
  }
  static Tensor from(std::initializer_list<T> values, const Shape& shape) {
    return from(std::vector<T>(values), shape);
  }
  // Uniform in [lo, hi), drawn from gen (which advances by numel()).
  static Tensor rand(const Shape& shape, Generator& gen, T lo = T(0), T hi = T(1)) {
    static_assert(is_floating_v<T>, "rand: floating-point tensors only");
    Tensor t = empty(shape);
    const std::uint64_t first = gen.advance(static_cast<std::uint64_t>(t.numel()));
    T* p = t.data();
    parallel_for(t.numel(), t.numel() * 16, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        p[i] = lo + (hi - lo) * gen.uniform_at<T>(first + static_cast<std::uint64_t>(i));
      }
    });
    return t;
  }
  // Normal with the given mean and standard deviation, drawn from gen.
  static Tensor randn(const Shape& shape, Generator& gen, T mean = T(0), T stddev = T(1)) {
    static_assert(is_floating_v<T>, "randn: floating-point tensors only");
    Tensor t = empty(shape);
    const std::uint64_t first = gen.advance(static_cast<std::uint64_t>(t.numel()));
    T* p = t.data();
    parallel_for(t.numel(), t.numel() * 32, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        p[i] = mean + stddev * gen.normal_at<T>(first + static_cast<std::uint64_t>(i));
      }
    });
    return t;
  }

  // ---- properties ------------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int dim() const { return shape_.size(); }
  std::int64_t size(std::int64_t axis) const { return shape_[wrap_axis(axis, dim(), "size")]; }
  std::int64_t stride(std::int64_t axis) const { return strides_[wrap_axis(axis, dim(), "stride")]; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t offset() const { return offset_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  static constexpr const char* dtype() { return dtype_name<T>(); }
  // Pointer to the first element (element offset applied). Valid for CPU tensors.
  T* data() const { return storage_ ? storage_->data() + offset_ : nullptr; }
  const std::shared_ptr<Storage<T>>& storage() const { return storage_; }
  bool shares_storage_with(const Tensor& o) const { return storage_ && storage_ == o.storage_; }

  bool is_contiguous() const {
    std::int64_t expect = 1;
    for (int i = dim() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[i] != expect) return false;
      expect *= shape_[i];
    }
    return true;
  }

  // Element access by multi-index; bounds are checked.
  T& at(std::initializer_list<std::int64_t> index) const { return data()[element_offset(index)]; }
  // The value of a one-element tensor.
  T item() const {
    if (numel() != 1) {
      detail::raise<ShapeError>("item: the tensor has shape {} ({} elements), not one element", shape_.str(),
                                numel());
    }
    return *data();
  }
  // The elements in row-major order.
  std::vector<T> to_vector() const {
    Tensor c = contiguous();
    return std::vector<T>(c.data(), c.data() + c.numel());
  }

  // ---- views (no copy) -------------------------------------------------------------------------
  // Same elements, new shape (one extent may be -1); requires a layout that allows a view.
  Tensor view(const Shape& shape) const {
    const Shape s = infer_shape(shape, "view");
    Tensor out = *this;
    out.shape_ = s;
    if (is_contiguous()) {
      out.strides_ = contiguous_strides(s);
      return out;
    }
    if (!view_strides(s, out.strides_)) {
      detail::raise<ShapeError>(
          "view: a tensor of shape {} with strides {} cannot be viewed as {}; use reshape() to copy",
          shape_.str(), strides_.str(), s.str());
    }
    return out;
  }
  // A view when the layout allows it, else a contiguous copy.
  Tensor reshape(const Shape& shape) const {
    const Shape s = infer_shape(shape, "reshape");
    Tensor out = *this;
    out.shape_ = s;
    if (is_contiguous()) {
      out.strides_ = contiguous_strides(s);
      return out;
    }
    if (view_strides(s, out.strides_)) return out;
    return contiguous().view(s);
  }
  Tensor flatten() const { return reshape({numel()}); }
  Tensor transpose(std::int64_t a, std::int64_t b) const {
    Tensor out = *this;
    const int ia = wrap_axis(a, dim(), "transpose");
    const int ib = wrap_axis(b, dim(), "transpose");
    std::swap(out.shape_[ia], out.shape_[ib]);
    std::swap(out.strides_[ia], out.strides_[ib]);
    return out;
  }
  // The transpose of a 2-D tensor.
  Tensor t() const {
    if (dim() != 2) detail::raise<ShapeError>("t: expects a 2-D tensor, got shape {}", shape_.str());
    return transpose(0, 1);
  }
  Tensor permute(const std::vector<int>& order) const {
    if (static_cast<int>(order.size()) != dim()) {
      detail::raise<ShapeError>("permute: {} axes given for a tensor of shape {}", order.size(),
                                shape_.str());
    }
    Tensor out = *this;
    std::array<bool, kMaxDims> seen{};
    for (int i = 0; i < dim(); ++i) {
      const int a = wrap_axis(order[static_cast<std::size_t>(i)], dim(), "permute");
      if (seen[static_cast<std::size_t>(a)]) detail::raise<ValueError>("permute: axis {} is repeated", a);
      seen[static_cast<std::size_t>(a)] = true;
      out.shape_[i] = shape_[a];
      out.strides_[i] = strides_[a];
    }
    return out;
  }
  // Elements [start, start+length) along axis.
  Tensor narrow(std::int64_t axis, std::int64_t start, std::int64_t length) const {
    const int a = wrap_axis(axis, dim(), "narrow");
    if (start < 0) start += shape_[a];
    if (start < 0 || length < 0 || start + length > shape_[a]) {
      detail::raise<IndexError>("narrow: range [{}, {}) is outside axis {} of extent {} (shape {})", start,
                                start + length, a, shape_[a], shape_.str());
    }
    Tensor out = *this;
    out.offset_ += start * strides_[a];
    out.shape_[a] = length;
    return out;
  }
  // Python-style slice [start:end:step] along axis (step > 0; ends are clamped as in Python).
  Tensor slice(std::int64_t axis, std::int64_t start, std::int64_t end, std::int64_t step = 1) const {
    const int a = wrap_axis(axis, dim(), "slice");
    if (step <= 0) detail::raise<ValueError>("slice: step must be positive, got {}", step);
    const std::int64_t n = shape_[a];
    auto clampi = [n](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + n : v, 0, n); };
    start = clampi(start);
    end = clampi(end);
    Tensor out = *this;
    out.offset_ += start * strides_[a];
    out.shape_[a] = end > start ? (end - start + step - 1) / step : 0;
    out.strides_[a] *= step;
    return out;
  }
  // Removes axis by picking one index (negative counts from the end).
  Tensor select(std::int64_t axis, std::int64_t index) const {
    const int a = wrap_axis(axis, dim(), "select");
    const std::int64_t i = index < 0 ? index + shape_[a] : index;
    if (i < 0 || i >= shape_[a]) {
      detail::raise<IndexError>("select: index {} is out of range for axis {} of extent {} (shape {})", index,
                                a, shape_[a], shape_.str());
    }
    Tensor out = *this;
    out.offset_ += i * strides_[a];
    out.shape_.erase(a);
    out.strides_.erase(a);
    return out;
  }
  Tensor unsqueeze(std::int64_t axis) const {
    const int a = wrap_axis(axis, dim() + 1, "unsqueeze");
    Tensor out = *this;
    const std::int64_t st = a < dim() ? shape_[a] * strides_[a] : 1;
    out.shape_.insert(a, 1);
    out.strides_.insert(a, st);
    return out;
  }
  // Removes axis, which must have extent 1.
  Tensor squeeze(std::int64_t axis) const {
    const int a = wrap_axis(axis, dim(), "squeeze");
    if (shape_[a] != 1) {
      detail::raise<ShapeError>("squeeze: axis {} has extent {}, not 1 (shape {})", a, shape_[a],
                                shape_.str());
    }
    Tensor out = *this;
    out.shape_.erase(a);
    out.strides_.erase(a);
    return out;
  }
  // Removes every axis of extent 1.
  Tensor squeeze() const {
    Tensor out = *this;
    for (int a = dim() - 1; a >= 0; --a) {
      if (shape_[a] == 1) {
        out.shape_.erase(a);
        out.strides_.erase(a);
      }
    }
    return out;
  }
  // Broadcasts to `shape` (NumPy rules; -1 keeps an extent) with stride 0 on the broadcast axes.
  Tensor expand(const Shape& shape) const {
    if (shape.size() < dim()) {
      detail::raise<ShapeError>("expand: cannot expand shape {} to fewer dimensions {}", shape_.str(),
                                shape.str());
    }
    Tensor out = *this;
    out.shape_ = Shape{};
    out.strides_ = Shape{};
    const int lead = shape.size() - dim();
    for (int i = 0; i < shape.size(); ++i) {
      const std::int64_t src = i >= lead ? shape_[i - lead] : 1;
      const std::int64_t want = shape[i] == -1 && i >= lead ? src : shape[i];
      if (src != want && src != 1) {
        detail::raise<ShapeError>("expand: shape {} cannot be expanded to {} (dimension {}: {} vs {})",
                                  shape_.str(), shape.str(), i, src, want);
      }
      out.shape_.push_back(want);
      out.strides_.push_back(i >= lead && src == want ? strides_[i - lead] : 0);
    }
    return out;
  }

  // ---- copies ----------------------------------------------------------------------------------
  // This tensor if already contiguous, else a contiguous copy.
  Tensor contiguous() const { return is_contiguous() ? *this : clone(); }
  // A deep, contiguous copy.
  Tensor clone() const {
    Tensor out = empty(shape_, device());
    out.copy_(*this);
    return out;
  }
  // Copies src (broadcast to this shape) into this tensor's elements.
  Tensor& copy_(const Tensor& src) {
    check_same_device(*this, src, "copy_");
    const Tensor s = src.dim() == dim() && src.shape() == shape_ ? src : src.expand(shape_);
    T* dst = storage_->data();
    const T* from = s.storage_->data();
    for_each_row<2>(shape_, {strides_, s.strides_}, {offset_, s.offset_},
                    [&](const Offsets<2>& off, std::int64_t n, const Offsets<2>& st) {
                      T* d = dst + off[0];
                      const T* f = from + off[1];
                      if (st[0] == 1 && st[1] == 1) {
                        std::memmove(d, f, static_cast<std::size_t>(n) * sizeof(T));
                      } else {
                        for (std::int64_t i = 0; i < n; ++i) d[i * st[0]] = f[i * st[1]];
                      }
                    });
    return *this;
  }
  Tensor& fill_(T value) {
    T* dst = storage_->data();
    for_each_row<1>(shape_, {strides_}, {offset_},
                    [&](const Offsets<1>& off, std::int64_t n, const Offsets<1>& st) {
                      for (std::int64_t i = 0; i < n; ++i) dst[off[0] + i * st[0]] = value;
                    });
    return *this;
  }
  // An explicit element-type conversion (the only kind dagpt does).
  template <typename U>
  Tensor<U> to() const {
    if constexpr (std::is_same_v<U, T>) {
      return *this;
    } else {
      Tensor<U> out = Tensor<U>::empty(shape_, device());
      U* dst = out.storage()->data();
      const T* src = storage_->data();
      for_each_row<2>(shape_, {out.strides(), strides_}, {0, offset_},
                      [&](const Offsets<2>& off, std::int64_t n, const Offsets<2>& st) {
                        for (std::int64_t i = 0; i < n; ++i) {
                          dst[off[0] + i * st[0]] = static_cast<U>(src[off[1] + i * st[1]]);
                        }
                      });
      return out;
    }
  }
  // Moves to a device. Only the CPU has a backend in this build.
  Tensor to(Device d) const {
    if (d == device()) return *this;
    detail::raise<DeviceError>(
        "to: cannot move a tensor from {} to {}: this build of dagpt has no CUDA backend", device(), d);
  }

 private:
  template <typename U>
  friend class Tensor;

  std::int64_t element_offset(std::initializer_list<std::int64_t> index) const {
    if (static_cast<int>(index.size()) != dim()) {
      detail::raise<IndexError>("at: {} indices given for a tensor of shape {}", index.size(), shape_.str());
    }
    std::int64_t off = 0;
    int i = 0;
    for (std::int64_t v : index) {
      if (v < 0 || v >= shape_[i]) {
        detail::raise<IndexError>("at: index {} is out of range for axis {} of extent {} (shape {})", v, i,
                                  shape_[i], shape_.str());
      }
      off += v * strides_[i];
      ++i;
    }
    return off;
  }

  Shape infer_shape(const Shape& shape, const char* op) const {
    Shape s = shape;
    int infer = -1;
    std::int64_t known = 1;
    for (int i = 0; i < s.size(); ++i) {
      if (s[i] == -1) {
        if (infer >= 0) detail::raise<ShapeError>("{}: only one extent may be -1 in {}", op, shape.str());
        infer = i;
      } else if (s[i] < 0) {
        detail::raise<ShapeError>("{}: negative extent in {}", op, shape.str());
      } else {
        known *= s[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || numel() % known != 0) {
        detail::raise<ShapeError>("{}: shape {} cannot hold {} elements (from shape {})", op, shape.str(),
                                  numel(), shape_.str());
      }
      s[infer] = numel() / known;
    }
    if (s.numel() != numel()) {
      detail::raise<ShapeError>("{}: shape {} ({} elements) does not match shape {} ({} elements)", op,
                                s.str(), s.numel(), shape_.str(), numel());
    }
    return s;
  }

  // Strides for viewing this (non-contiguous) tensor as `s`, when each new axis falls inside a run of old
  // axes that are contiguous with one another (the rule numpy and PyTorch use).
  bool view_strides(const Shape& s, Shape& out) const {
    out = Shape{};
    for (int i = 0; i < s.size(); ++i) out.push_back(0);
    int oi = 0;  // old axis
    int ni = 0;  // new axis
    while (ni < s.size() || oi < dim()) {
      // gather one chunk of old axes and one of new axes with equal element counts
      std::int64_t old_n = 1;
      std::int64_t new_n = 1;
      const int old_begin = oi;
      const int new_begin = ni;
      if (oi < dim()) old_n *= shape_[oi++];
      if (ni < s.size()) new_n *= s[ni++];
      while (old_n != new_n) {
        if (old_n < new_n) {
          if (oi >= dim()) return false;
          old_n *= shape_[oi++];
        } else {
          if (ni >= s.size()) return false;
          new_n *= s[ni++];
        }
      }
      // old axes in [old_begin, oi) must be mutually contiguous
      for (int k = old_begin; k + 1 < oi; ++k) {
        if (shape_[k + 1] != 1 && strides_[k] != strides_[k + 1] * shape_[k + 1]) return false;
      }
      std::int64_t st = oi > old_begin ? strides_[oi - 1] : 1;
      for (int k = ni - 1; k >= new_begin; --k) {
        out[k] = st;
        st *= s[k];
      }
    }
    return true;
  }

  std::shared_ptr<Storage<T>> storage_;
  Shape shape_{0};
  Shape strides_{1};
  std::int64_t offset_ = 0;
};

// Throws a DeviceError naming both devices when two tensors of one op live on different devices.
template <typename A, typename B>
void check_same_device(const Tensor<A>& a, const Tensor<B>& b, const char* op) {
  if (a.device() != b.device()) {
    detail::raise<DeviceError>("{}: tensors on different devices ({} and {})", op, a.device(), b.device());
  }
}

namespace detail {
// Throws a ShapeError naming the op and both shapes when they differ.
template <typename A, typename B>
void check_same_shape(const Tensor<A>& a, const Tensor<B>& b, const char* op) {
  if (a.shape() != b.shape()) {
    raise<ShapeError>("{}: shapes {} and {} differ", op, a.shape().str(), b.shape().str());
  }
}
}  // namespace detail

// Throws a DeviceError when a tensor is not on the CPU (the only backend of this build).
template <typename T>
void check_cpu(const Tensor<T>& a, const char* op) {
  if (!a.device().is_cpu()) {
    detail::raise<DeviceError>("{}: no kernel for a {} tensor on {} in this build", op, dtype_name<T>(),
                               a.device());
  }
}

}  // namespace dagpt
