// Reverse-mode autograd: Var<T> is a value in the graph (a Tensor plus its gradient and the Node that
// made it); Node is one op application with a hand-written backward; backward() walks the graph in
// reverse topological order, accumulating gradients. The whole engine is this file.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dagpt/core/tensor.hpp"
#include "dagpt/kernels/cpu/elementwise.hpp"

namespace dagpt {

// ---- grad mode -----------------------------------------------------------------------------------
namespace detail {
inline bool& grad_mode() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

// Whether ops record the graph on this thread.
inline bool grad_enabled() { return detail::grad_mode(); }

// While alive, ops on this thread record no graph (their results do not require grad).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(detail::grad_mode()) { detail::grad_mode() = false; }
  ~NoGradGuard() { detail::grad_mode() = prev_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

template <typename T>
struct VarImpl;

// One application of an op in the graph. backward() maps the gradients of its outputs to the gradients
// of its inputs (an undefined Tensor where an input needs none).
template <typename T>
class Node {
 public:
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Unlinks the graph iteratively: plain destructors would recurse once per node, and a long chain
  // would overflow the stack.
  virtual ~Node() {
    std::vector<std::shared_ptr<VarImpl<T>>> stack = std::move(inputs);
    while (!stack.empty()) {
      std::shared_ptr<VarImpl<T>> v = std::move(stack.back());
      stack.pop_back();
      if (v && v.use_count() == 1 && v->grad_fn && v->grad_fn.use_count() == 1) {
        for (auto& in : v->grad_fn->inputs) stack.push_back(std::move(in));
        v->grad_fn->inputs.clear();
      }
    }
  }
  virtual std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& grad_outputs) = 0;
  // Frees what was saved for backward (called after a backward without retain_graph).
  virtual void release() {}
  virtual std::string name() const = 0;

  bool needs_input_grad(std::size_t i) const { return i < needs_.size() && needs_[i]; }

  // Set up by the engine when the node enters the graph.
  std::vector<std::shared_ptr<VarImpl<T>>> inputs;
  std::vector<Shape> output_shapes;
  std::vector<bool> needs_;
  bool released = false;
};

template <typename T>
struct VarImpl {
  Tensor<T> value;
  Tensor<T> grad;
  bool requires_grad = false;
  bool retain_grad = false;
  std::shared_ptr<Node<T>> grad_fn;  // null for a leaf
  int output_index = 0;
};

namespace detail {
// into += g. A gradient stored on a Var (leaf or retained) is its own copy, so that optimizers may
// update it in place; gradients in flight may alias each other (nothing writes to them). A gradient
// whose buffer nothing else holds (a backward's fresh result) is taken as it is: no one else can see it.
// A sum that nothing else holds (the first gradient taken as it was, or an earlier sum) is added to in
// place: no fresh buffer per extra use of a value (the residual stream, the head's shared input).
template <typename T>
bool sole_owner(const Tensor<T>& t) {
  return t.storage() != nullptr && t.storage().use_count() == 1 && t.is_contiguous() && t.offset() == 0 &&
         t.numel() == t.storage()->size() && t.device().is_cpu();
}
template <typename T>
void accumulate(Tensor<T>& into, const Tensor<T>& g, bool own = false) {
  if (into.defined()) {
    if (sole_owner(into) && into.shape() == g.shape() && !into.shares_storage_with(g)) {
      const Tensor<T> gc = g.contiguous();
      T* a = into.data();
      const T* b = gc.data();
      const std::int64_t n = into.numel();
      parallel_for(n, n * 2, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
        for (std::int64_t i = i0; i < i1; ++i) a[i] += b[i];
      });
    } else {
      into = add(into, g);
    }
  } else {
    into = own && !sole_owner(g) ? g.clone() : g;
  }
}
}  // namespace detail

// A tensor that takes part in automatic differentiation. Copies share the same node (like Tensor copies
// share storage).
template <typename T>
class Var {
  static_assert(is_floating_v<T>, "Var<T>: autograd works on float and double tensors");

 public:
  Var() = default;
  explicit Var(Tensor<T> value, bool requires_grad = false) : impl_(std::make_shared<VarImpl<T>>()) {
    impl_->value = std::move(value);
    impl_->requires_grad = requires_grad;
  }

  bool defined() const { return impl_ != nullptr; }
  const Tensor<T>& value() const { return impl().value; }
  // The accumulated gradient (undefined until a backward pass reaches this Var).
  const Tensor<T>& grad() const { return impl().grad; }
  bool requires_grad() const { return impl().requires_grad; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  std::string grad_fn_name() const { return is_leaf() ? "" : impl().grad_fn->name(); }

  // Only leaves may change requires_grad.
  Var& set_requires_grad(bool r) {
    if (!is_leaf()) {
      detail::raise<AutogradError>("set_requires_grad: {} is not a leaf (made by {})", shape().str(),
                                   grad_fn_name());
    }
    impl().requires_grad = r;
    return *this;
  }
  // Keep the gradient of this non-leaf Var after backward (leaves always keep theirs).
  Var& retain_grad() {
    impl().retain_grad = true;
    return *this;
  }
  void zero_grad() { impl().grad = Tensor<T>(); }
  // The same value, cut from the graph.
  Var detach() const { return Var(value(), false); }

  const Shape& shape() const { return value().shape(); }
  int dim() const { return value().dim(); }
  std::int64_t size(std::int64_t axis) const { return value().size(axis); }
  std::int64_t numel() const { return value().numel(); }
  T item() const { return value().item(); }

  // Back-propagates from this Var. Without an argument it must hold one element (gradient 1).
  void backward(bool retain_graph = false) const {
    if (numel() != 1) {
      detail::raise<AutogradError>(
          "backward: the output has shape {} ({} elements); pass a gradient of that shape or reduce to a "
          "scalar",
          shape().str(), numel());
    }
    backward(Tensor<T>::ones(shape()), retain_graph);
  }
  void backward(const Tensor<T>& grad, bool retain_graph = false) const;

  // Used by ops and Functions to build the graph.
  const std::shared_ptr<VarImpl<T>>& impl_ptr() const { return impl_; }
  static Var from_impl(std::shared_ptr<VarImpl<T>> p) {
    Var v;
    v.impl_ = std::move(p);
    return v;
  }

  // Views and copies (defined in autograd/ops.hpp).
  Var reshape(const Shape& s) const;
  Var view(const Shape& s) const;
  Var flatten() const;
  Var transpose(std::int64_t a, std::int64_t b) const;
  Var t() const;
  Var permute(const std::vector<int>& order) const;
  Var narrow(std::int64_t axis, std::int64_t start, std::int64_t length) const;
  Var select(std::int64_t axis, std::int64_t index) const;
  Var unsqueeze(std::int64_t axis) const;
  Var squeeze(std::int64_t axis) const;
  Var expand(const Shape& s) const;
  Var contiguous() const;

 private:
  VarImpl<T>& impl() const {
    if (!impl_) detail::raise<AutogradError>("use of an undefined Var");
    return *impl_;
  }
  std::shared_ptr<VarImpl<T>> impl_;
};

// Connects `node` to its inputs and returns its outputs as Vars. When grad mode is off, or no input
// requires grad, the outputs are plain (non-requiring) Vars and the node is dropped.
template <typename T>
std::vector<Var<T>> attach(std::shared_ptr<Node<T>> node, const std::vector<Var<T>>& inputs,
                           std::vector<Tensor<T>> outputs) {
  bool any = false;
  if (grad_enabled()) {
    for (const auto& v : inputs) any = any || (v.defined() && v.requires_grad());
  }
  std::vector<Var<T>> result;
  result.reserve(outputs.size());
  if (!any) {
    for (auto& o : outputs) result.emplace_back(std::move(o), false);
    return result;
  }
  node->needs_.clear();
  node->inputs.clear();
  for (const auto& v : inputs) {
    node->needs_.push_back(v.defined() && v.requires_grad());
    node->inputs.push_back(v.defined() ? v.impl_ptr() : nullptr);
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    auto impl = std::make_shared<VarImpl<T>>();
    node->output_shapes.push_back(outputs[i].shape());
    impl->value = std::move(outputs[i]);
    impl->requires_grad = true;
    impl->grad_fn = node;
    impl->output_index = static_cast<int>(i);
    result.push_back(Var<T>::from_impl(std::move(impl)));
  }
  return result;
}

template <typename T>
void Var<T>::backward(const Tensor<T>& grad, bool retain_graph) const {
  if (!requires_grad()) {
    detail::raise<AutogradError>(
        "backward: the output (shape {}) does not require grad; no input of the graph "
        "that made it requires grad, or it was made under NoGradGuard",
        shape().str());
  }
  if (grad.shape() != shape()) {
    detail::raise<AutogradError>("backward: gradient of shape {} for an output of shape {}",
                                 grad.shape().str(), shape().str());
  }
  if (is_leaf()) {
    detail::accumulate(impl().grad, grad, true);
    return;
  }
  // Topological order by an iterative depth-first walk (deep graphs must not overflow the stack).
  std::vector<Node<T>*> order;
  std::unordered_set<Node<T>*> seen;
  std::vector<std::pair<Node<T>*, std::size_t>> stack{{impl().grad_fn.get(), 0}};
  seen.insert(impl().grad_fn.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (node->released) {
      detail::raise<AutogradError>(
          "backward: the graph through {} was already freed by an earlier backward; "
          "pass retain_graph=true to the first one",
          node->name());
    }
    if (next < node->inputs.size()) {
      const auto& in = node->inputs[next++];
      if (in && in->grad_fn && seen.insert(in->grad_fn.get()).second)
        stack.emplace_back(in->grad_fn.get(), 0);
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }

  std::unordered_map<Node<T>*, std::vector<Tensor<T>>> pending;
  pending[impl().grad_fn.get()].resize(impl().grad_fn->output_shapes.size());
  detail::accumulate(pending[impl().grad_fn.get()][static_cast<std::size_t>(impl().output_index)], grad);
  if (impl().retain_grad) detail::accumulate(impl().grad, grad, true);

  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node<T>* node = *it;
    auto found = pending.find(node);
    if (found == pending.end()) continue;  // no gradient reached it
    std::vector<Tensor<T>> gout = std::move(found->second);
    pending.erase(found);
    gout.resize(node->output_shapes.size());
    for (std::size_t i = 0; i < gout.size(); ++i) {
      if (!gout[i].defined()) gout[i] = Tensor<T>::zeros(node->output_shapes[i]);
    }
    std::vector<Tensor<T>> gin = node->backward(gout);
    if (gin.size() != node->inputs.size()) {
      detail::raise<AutogradError>("backward of {} returned {} gradients for {} inputs", node->name(),
                                   gin.size(), node->inputs.size());
    }
    for (std::size_t i = 0; i < gin.size(); ++i) {
      if (!node->needs_input_grad(i) || !gin[i].defined()) continue;
      VarImpl<T>& in = *node->inputs[i];
      if (gin[i].shape() != in.value.shape()) {
        detail::raise<AutogradError>(
            "backward of {} gave input {} a gradient of shape {}, but the input has shape {}", node->name(),
            i, gin[i].shape().str(), in.value.shape().str());
      }
      if (in.grad_fn) {
        auto& slot = pending[in.grad_fn.get()];
        slot.resize(in.grad_fn->output_shapes.size());
        detail::accumulate(slot[static_cast<std::size_t>(in.output_index)], gin[i]);
        if (in.retain_grad) detail::accumulate(in.grad, gin[i], true);
      } else {
        detail::accumulate(in.grad, gin[i], true);
      }
    }
    if (!retain_graph) {
      node->release();
      node->released = true;
    }
  }
}

}  // namespace dagpt
