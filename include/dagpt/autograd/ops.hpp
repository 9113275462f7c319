// The differentiable versions of every CPU op: each one computes its value with the kernel and records a
// closure with its hand-written backward. Comparisons and argmax are not differentiable: their results
// never require grad (and argmax returns a plain index tensor).
#pragma once

#include <numeric>
#include <vector>

#include "dagpt/autograd/function.hpp"
#include "dagpt/kernels/cpu/ops.hpp"

namespace dagpt {

namespace detail {
template <typename T>
using Grads = std::vector<Tensor<T>>;
}  // namespace detail

// ---- binary arithmetic (broadcasting) ------------------------------------------------------------
template <typename T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
  return make_op<T>(
      "add", add(a.value(), b.value()), {a, b},
      [sa = a.shape(), sb = b.shape()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
        return {n.needs_input_grad(0) ? sum_to(g, sa) : Tensor<T>(),
                n.needs_input_grad(1) ? sum_to(g, sb) : Tensor<T>()};
      });
}
template <typename T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
  return make_op<T>(
      "sub", sub(a.value(), b.value()), {a, b},
      [sa = a.shape(), sb = b.shape()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
        return {n.needs_input_grad(0) ? sum_to(g, sa) : Tensor<T>(),
                n.needs_input_grad(1) ? sum_to(neg(g), sb) : Tensor<T>()};
      });
}
template <typename T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
  return make_op<T>("mul", mul(a.value(), b.value()), {a, b},
                    [x = a.value(), y = b.value()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
                      return {n.needs_input_grad(0) ? sum_to(mul(g, y), x.shape()) : Tensor<T>(),
                              n.needs_input_grad(1) ? sum_to(mul(g, x), y.shape()) : Tensor<T>()};
                    });
}
template <typename T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
  return make_op<T>("div", div(a.value(), b.value()), {a, b},
                    [x = a.value(), y = b.value()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
                      Tensor<T> ga;
                      Tensor<T> gb;
                      if (n.needs_input_grad(0)) ga = sum_to(div(g, y), x.shape());
                      if (n.needs_input_grad(1)) {
                        gb = sum_to(zip(
                                        mul(g, x), y, [](T u, T v) { return -u / (v * v); }, "div_backward"),
                                    y.shape());
                      }
                      return {ga, gb};
                    });
}

// With a scalar on either side (the scalar is a constant).
template <typename T>
Var<T> add(const Var<T>& a, detail::nondeduced_t<T> s) {
  return make_op<T>("add_scalar", add(a.value(), s), {a},
                    [](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g}; });
}
template <typename T>
Var<T> mul(const Var<T>& a, detail::nondeduced_t<T> s) {
  return make_op<T>("mul_scalar", mul(a.value(), s), {a},
                    [s](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {mul(g, s)}; });
}
template <typename T>
Var<T> div(const Var<T>& a, detail::nondeduced_t<T> s) {
  return make_op<T>("div_scalar", div(a.value(), s), {a},
                    [s](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {div(g, s)}; });
}
template <typename T>
Var<T> rsub(detail::nondeduced_t<T> s, const Var<T>& a) {  // s - a
  return make_op<T>("rsub_scalar", sub(s, a.value()), {a},
                    [](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {neg(g)}; });
}
template <typename T>
Var<T> rdiv(detail::nondeduced_t<T> s, const Var<T>& a) {  // s / a
  Tensor<T> y = div(s, a.value());
  return make_op<T>("rdiv_scalar", y, {a},
                    [x = a.value(), y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {neg(div(mul(g, y), x))};
                    });
}

// ---- unary ---------------------------------------------------------------------------------------
template <typename T>
Var<T> neg(const Var<T>& a) {
  return make_op<T>("neg", neg(a.value()), {a},
                    [](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {neg(g)}; });
}
template <typename T>
Var<T> exp(const Var<T>& a) {
  Tensor<T> y = exp(a.value());
  return make_op<T>("exp", y, {a},
                    [y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {mul(g, y)}; });
}
template <typename T>
Var<T> log(const Var<T>& a) {
  return make_op<T>(
      "log", log(a.value()), {a},
      [x = a.value()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {div(g, x)}; });
}
template <typename T>
Var<T> tanh(const Var<T>& a) {
  Tensor<T> y = tanh(a.value());
  return make_op<T>("tanh", y, {a}, [y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
    return {zip(
        g, y, [](T gv, T yv) { return gv * (T(1) - yv * yv); }, "tanh_backward")};
  });
}
template <typename T>
Var<T> sigmoid(const Var<T>& a) {
  Tensor<T> y = sigmoid(a.value());
  return make_op<T>("sigmoid", y, {a}, [y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
    return {zip(
        g, y, [](T gv, T yv) { return gv * yv * (T(1) - yv); }, "sigmoid_backward")};
  });
}
// d|x|/dx = sign(x) (0 at 0, as PyTorch).
template <typename T>
Var<T> abs(const Var<T>& a) {
  return make_op<T>(
      "abs", abs(a.value()), {a},
      [x = a.value()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {mul(g, sign(x))}; });
}
// Piecewise constant: its gradient is zero everywhere it exists.
template <typename T>
Var<T> sign(const Var<T>& a) {
  return make_op<T>("sign", sign(a.value()), {a},
                    [s = a.shape()](const Tensor<T>&, const Node<T>&) -> detail::Grads<T> {
                      return {Tensor<T>::zeros(s)};
                    });
}
template <typename T>
Var<T> square(const Var<T>& a) {
  return make_op<T>("square", square(a.value()), {a},
                    [x = a.value()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {zip(
                          g, x, [](T gv, T xv) { return T(2) * gv * xv; }, "square_backward")};
                    });
}
template <typename T>
Var<T> sqrt(const Var<T>& a) {
  Tensor<T> y = sqrt(a.value());
  return make_op<T>("sqrt", y, {a}, [y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
    return {zip(
        g, y, [](T gv, T yv) { return gv / (T(2) * yv); }, "sqrt_backward")};
  });
}
template <typename T>
Var<T> pow(const Var<T>& a, detail::nondeduced_t<T> p) {
  return make_op<T>("pow", pow(a.value(), p), {a},
                    [x = a.value(), p](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {zip(
                          g, x, [p](T gv, T xv) { return gv * p * static_cast<T>(std::pow(xv, p - T(1))); },
                          "pow_backward")};
                    });
}
// The gradient passes where lo <= x <= hi (as PyTorch).
template <typename T>
Var<T> clamp(const Var<T>& a, detail::nondeduced_t<T> lo, detail::nondeduced_t<T> hi) {
  return make_op<T>(
      "clamp", clamp(a.value(), lo, hi), {a},
      [x = a.value(), lo, hi](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
        return {zip(
            g, x, [lo, hi](T gv, T xv) { return xv >= lo && xv <= hi ? gv : T(0); }, "clamp_backward")};
      });
}
// cond ? a : b; cond (nonzero = true) is a constant.
template <typename T>
Var<T> where(const Tensor<T>& cond, const Var<T>& a, const Var<T>& b) {
  return make_op<T>(
      "where", where(cond, a.value(), b.value()), {a, b},
      [cond, sa = a.shape(), sb = b.shape()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
        const Tensor<T> zero = Tensor<T>::scalar(T(0));
        return {n.needs_input_grad(0) ? sum_to(where(cond, g, zero), sa) : Tensor<T>(),
                n.needs_input_grad(1) ? sum_to(where(cond, zero, g), sb) : Tensor<T>()};
      });
}

// ---- comparisons: not differentiable (the result never requires grad) ----------------------------
#define DAGPT_VAR_COMPARISON(name)                          \
  template <typename T>                                     \
  Var<T> name(const Var<T>& a, const Var<T>& b) {           \
    return Var<T>(name(a.value(), b.value()), false);       \
  }                                                         \
  template <typename T>                                     \
  Var<T> name(const Var<T>& a, detail::nondeduced_t<T> s) { \
    return Var<T>(name(a.value(), s), false);               \
  }
DAGPT_VAR_COMPARISON(eq)
DAGPT_VAR_COMPARISON(ne)
DAGPT_VAR_COMPARISON(lt)
DAGPT_VAR_COMPARISON(le)
DAGPT_VAR_COMPARISON(gt)
DAGPT_VAR_COMPARISON(ge)
#undef DAGPT_VAR_COMPARISON

// Not differentiable: the index of the largest element.
template <typename T>
Tensor<std::int64_t> argmax(const Var<T>& a, std::int64_t axis, bool keepdim = false) {
  return argmax(a.value(), axis, keepdim);
}
template <typename T>
Tensor<std::int64_t> argmax(const Var<T>& a) {
  return argmax(a.value());
}

// ---- reductions ----------------------------------------------------------------------------------
template <typename T>
Var<T> sum(const Var<T>& a) {
  return make_op<T>(
      "sum", sum(a.value()), {a},
      [s = a.shape()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g.expand(s)}; });
}
template <typename T>
Var<T> sum(const Var<T>& a, std::int64_t axis, bool keepdim = false) {
  const int ax = wrap_axis(axis, a.dim(), "sum");
  return make_op<T>("sum_axis", sum(a.value(), ax, keepdim), {a},
                    [s = a.shape(), ax, keepdim](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {(keepdim ? g : g.unsqueeze(ax)).expand(s)};
                    });
}
template <typename T>
Var<T> sum(const Var<T>& a, const std::vector<std::int64_t>& axes, bool keepdim = false) {
  Tensor<T> y = sum(a.value(), axes, keepdim);
  Shape keep = a.shape();
  for (auto v : axes) keep[wrap_axis(v, a.dim(), "sum")] = 1;
  return make_op<T>("sum_axes", y, {a},
                    [s = a.shape(), keep](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {g.reshape(keep).expand(s)};
                    });
}
template <typename T>
Var<T> mean(const Var<T>& a) {
  const T inv = T(1) / static_cast<T>(a.numel());
  return make_op<T>("mean", mean(a.value()), {a},
                    [s = a.shape(), inv](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {mul(g, inv).expand(s)};
                    });
}
template <typename T>
Var<T> mean(const Var<T>& a, std::int64_t axis, bool keepdim = false) {
  const int ax = wrap_axis(axis, a.dim(), "mean");
  const T inv = T(1) / static_cast<T>(a.shape()[ax]);
  return make_op<T>(
      "mean_axis", mean(a.value(), ax, keepdim), {a},
      [s = a.shape(), ax, keepdim, inv](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
        return {mul(keepdim ? g : g.unsqueeze(ax), inv).expand(s)};
      });
}
// The gradient goes to the first largest element of each line (as argmax picks it).
template <typename T>
Var<T> max(const Var<T>& a, std::int64_t axis, bool keepdim = false) {
  const int ax = wrap_axis(axis, a.dim(), "max");
  return make_op<T>(
      "max_axis", max(a.value(), ax, keepdim), {a},
      [x = a.value(), ax, keepdim](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
        const Tensor<std::int64_t> idx = argmax(x, ax, true);
        return {scatter_add(Tensor<T>::zeros(x.shape()), ax, idx, keepdim ? g : g.unsqueeze(ax))};
      });
}
template <typename T>
Var<T> max(const Var<T>& a) {
  return make_op<T>("max", max(a.value()), {a},
                    [x = a.value()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      Tensor<T> out = Tensor<T>::zeros(x.shape());
                      out.data()[argmax(x).item()] = g.item();
                      return {out};
                    });
}
// Exact with zeros in the line (prefix/suffix products, no division).
template <typename T>
Var<T> prod(const Var<T>& a, std::int64_t axis, bool keepdim = false) {
  const int ax = wrap_axis(axis, a.dim(), "prod");
  return make_op<T>(
      "prod_axis", prod(a.value(), ax, keepdim), {a},
      [x = a.value(), ax, keepdim](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
        return {prod_backward(
            x, ax, (keepdim ? g : g.unsqueeze(ax)).expand(detail::reduced_shape(x.shape(), ax, true)))};
      });
}
template <typename T>
Var<T> prod(const Var<T>& a) {
  return make_op<T>("prod", prod(a.value()), {a},
                    [x = a.value()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {prod_backward(x.flatten(), 0, g.reshape({1})).reshape(x.shape())};
                    });
}

// ---- matrix product, softmax ---------------------------------------------------------------------
template <typename T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
  return make_op<T>("matmul", matmul(a.value(), b.value()), {a, b},
                    [x = a.value(), y = b.value()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
                      Tensor<T> ga;
                      Tensor<T> gb;
                      if (n.needs_input_grad(0)) ga = sum_to(matmul(g, y.transpose(-1, -2)), x.shape());
                      if (n.needs_input_grad(1)) gb = sum_to(matmul(x.transpose(-1, -2), g), y.shape());
                      return {ga, gb};
                    });
}
template <typename T>
Var<T> softmax(const Var<T>& a) {
  Tensor<T> y = softmax(a.value());
  return make_op<T>("softmax", y, {a}, [y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
    return {softmax_backward(y, g)};
  });
}
template <typename T>
Var<T> log_softmax(const Var<T>& a) {
  Tensor<T> y = log_softmax(a.value());
  return make_op<T>("log_softmax", y, {a}, [y](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
    return {log_softmax_backward(y, g)};
  });
}

// ---- indexing ------------------------------------------------------------------------------------
template <typename T>
Var<T> gather(const Var<T>& a, std::int64_t axis, const Tensor<std::int64_t>& index) {
  const int ax = wrap_axis(axis, a.dim(), "gather");
  return make_op<T>("gather", gather(a.value(), ax, index), {a},
                    [s = a.shape(), ax, index](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {scatter_add(Tensor<T>::zeros(s), ax, index, g)};
                    });
}
template <typename T>
Var<T> index_select(const Var<T>& a, std::int64_t axis, const Tensor<std::int64_t>& indices) {
  const int ax = wrap_axis(axis, a.dim(), "index_select");
  return make_op<T>("index_select", index_select(a.value(), ax, indices), {a},
                    [s = a.shape(), ax, indices](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      return {index_add(Tensor<T>::zeros(s), ax, indices, g)};
                    });
}
template <typename T>
Var<T> scatter_add(const Var<T>& base, std::int64_t axis, const Tensor<std::int64_t>& index,
                   const Var<T>& src) {
  const int ax = wrap_axis(axis, base.dim(), "scatter_add");
  return make_op<T>("scatter_add", scatter_add(base.value(), ax, index, src.value()), {base, src},
                    [ax, index](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
                      return {g, n.needs_input_grad(1) ? gather(g, ax, index) : Tensor<T>()};
                    });
}
template <typename T>
Var<T> concat(const std::vector<Var<T>>& parts, std::int64_t axis) {
  std::vector<Tensor<T>> vals;
  std::vector<std::int64_t> lens;
  for (const auto& p : parts) {
    vals.push_back(p.value());
    lens.push_back(p.dim() > 0 ? p.shape()[wrap_axis(axis, p.dim(), "concat")] : 0);
  }
  Tensor<T> y = concat(vals, axis);
  const int ax = wrap_axis(axis, y.dim(), "concat");
  return make_op<T>("concat", y, parts, [ax, lens](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
    detail::Grads<T> out;
    std::int64_t at = 0;
    for (std::size_t i = 0; i < lens.size(); ++i) {
      out.push_back(n.needs_input_grad(i) ? g.narrow(ax, at, lens[i]) : Tensor<T>());
      at += lens[i];
    }
    return out;
  });
}
template <typename T>
Var<T> stack(const std::vector<Var<T>>& parts, std::int64_t axis) {
  std::vector<Tensor<T>> vals;
  for (const auto& p : parts) vals.push_back(p.value());
  Tensor<T> y = stack(vals, axis);
  const int ax = wrap_axis(axis, y.dim(), "stack");
  return make_op<T>(
      "stack", y, parts, [ax, k = parts.size()](const Tensor<T>& g, const Node<T>& n) -> detail::Grads<T> {
        detail::Grads<T> out;
        for (std::size_t i = 0; i < k; ++i) {
          out.push_back(n.needs_input_grad(i) ? g.select(ax, static_cast<std::int64_t>(i)) : Tensor<T>());
        }
        return out;
      });
}

// ---- views ---------------------------------------------------------------------------------------
template <typename T>
Var<T> Var<T>::reshape(const Shape& s) const {
  return make_op<T>(
      "reshape", value().reshape(s), {*this},
      [o = shape()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g.reshape(o)}; });
}
template <typename T>
Var<T> Var<T>::view(const Shape& s) const {
  return make_op<T>(
      "view", value().view(s), {*this},
      [o = shape()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g.reshape(o)}; });
}
template <typename T>
Var<T> Var<T>::flatten() const {
  return reshape({numel()});
}
template <typename T>
Var<T> Var<T>::transpose(std::int64_t a, std::int64_t b) const {
  return make_op<T>(
      "transpose", value().transpose(a, b), {*this},
      [a, b](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g.transpose(a, b)}; });
}
template <typename T>
Var<T> Var<T>::t() const {
  if (dim() != 2) detail::raise<ShapeError>("t: expects a 2-D tensor, got shape {}", shape().str());
  return transpose(0, 1);
}
template <typename T>
Var<T> Var<T>::permute(const std::vector<int>& order) const {
  Tensor<T> y = value().permute(order);
  std::vector<int> inverse(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    inverse[static_cast<std::size_t>(wrap_axis(order[i], dim(), "permute"))] = static_cast<int>(i);
  }
  return make_op<T>("permute", y, {*this}, [inverse](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
    return {g.permute(inverse)};
  });
}
template <typename T>
Var<T> Var<T>::narrow(std::int64_t axis, std::int64_t start, std::int64_t length) const {
  Tensor<T> y = value().narrow(axis, start, length);
  const int ax = wrap_axis(axis, dim(), "narrow");
  const std::int64_t st = start < 0 ? start + shape()[ax] : start;
  return make_op<T>("narrow", y, {*this},
                    [s = shape(), ax, st, length](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      Tensor<T> out = Tensor<T>::zeros(s);
                      out.narrow(ax, st, length).copy_(g);
                      return {out};
                    });
}
template <typename T>
Var<T> Var<T>::select(std::int64_t axis, std::int64_t index) const {
  Tensor<T> y = value().select(axis, index);
  return make_op<T>("select", y, {*this},
                    [s = shape(), axis, index](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> {
                      Tensor<T> out = Tensor<T>::zeros(s);
                      out.select(axis, index).copy_(g);
                      return {out};
                    });
}
template <typename T>
Var<T> Var<T>::unsqueeze(std::int64_t axis) const {
  const int ax = wrap_axis(axis, dim() + 1, "unsqueeze");
  return make_op<T>("unsqueeze", value().unsqueeze(ax), {*this},
                    [ax](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g.squeeze(ax)}; });
}
template <typename T>
Var<T> Var<T>::squeeze(std::int64_t axis) const {
  const int ax = wrap_axis(axis, dim(), "squeeze");
  return make_op<T>(
      "squeeze", value().squeeze(ax), {*this},
      [ax](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g.unsqueeze(ax)}; });
}
template <typename T>
Var<T> Var<T>::expand(const Shape& s) const {
  return make_op<T>(
      "expand", value().expand(s), {*this},
      [o = shape()](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {sum_to(g, o)}; });
}
template <typename T>
Var<T> Var<T>::contiguous() const {
  return make_op<T>("contiguous", value().contiguous(), {*this},
                    [](const Tensor<T>& g, const Node<T>&) -> detail::Grads<T> { return {g}; });
}

// ---- operators -----------------------------------------------------------------------------------
template <typename T>
Var<T> operator+(const Var<T>& a, const Var<T>& b) {
  return add(a, b);
}
template <typename T>
Var<T> operator-(const Var<T>& a, const Var<T>& b) {
  return sub(a, b);
}
template <typename T>
Var<T> operator*(const Var<T>& a, const Var<T>& b) {
  return mul(a, b);
}
template <typename T>
Var<T> operator/(const Var<T>& a, const Var<T>& b) {
  return div(a, b);
}
template <typename T>
Var<T> operator-(const Var<T>& a) {
  return neg(a);
}
template <typename T>
Var<T> operator+(const Var<T>& a, detail::nondeduced_t<T> s) {
  return add(a, s);
}
template <typename T>
Var<T> operator+(detail::nondeduced_t<T> s, const Var<T>& a) {
  return add(a, s);
}
template <typename T>
Var<T> operator-(const Var<T>& a, detail::nondeduced_t<T> s) {
  return add(a, -s);
}
template <typename T>
Var<T> operator-(detail::nondeduced_t<T> s, const Var<T>& a) {
  return rsub(s, a);
}
template <typename T>
Var<T> operator*(const Var<T>& a, detail::nondeduced_t<T> s) {
  return mul(a, s);
}
template <typename T>
Var<T> operator*(detail::nondeduced_t<T> s, const Var<T>& a) {
  return mul(a, s);
}
template <typename T>
Var<T> operator/(const Var<T>& a, detail::nondeduced_t<T> s) {
  return div(a, s);
}
template <typename T>
Var<T> operator/(detail::nondeduced_t<T> s, const Var<T>& a) {
  return rdiv(s, a);
}

}  // namespace dagpt
