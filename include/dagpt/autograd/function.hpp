// Function: the way to add a fused differentiable op (the DAG executor, attention, LayerNorm, losses):
// derive, write forward() on plain tensors and backward() by hand, and call apply(). Saved tensors are
// freed after backward unless the graph is retained.
//
//   struct Square : dagpt::Function<double> {
//     std::vector<Tensor<double>> forward(const std::vector<Tensor<double>>& in) override {
//       save_for_backward({in[0]});
//       return {in[0] * in[0]};
//     }
//     std::vector<Tensor<double>> backward(const std::vector<Tensor<double>>& g) override {
//       return {g[0] * saved()[0] * 2.0};
//     }
//     std::string name() const override { return "Square"; }
//   };
//   Var<double> y = dagpt::apply<Square>({x})[0];
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dagpt/autograd/var.hpp"

namespace dagpt {

template <typename T>
class Function : public Node<T> {
 public:
  // Computes the outputs from the input values; runs without recording a graph.
  virtual std::vector<Tensor<T>> forward(const std::vector<Tensor<T>>& inputs) = 0;

  void release() override { saved_.clear(); }

 protected:
  void save_for_backward(std::vector<Tensor<T>> tensors) { saved_ = std::move(tensors); }
  const std::vector<Tensor<T>>& saved() const {
    if (this->released) {
      detail::raise<AutogradError>("{}: saved tensors were freed by an earlier backward", this->name());
    }
    return saved_;
  }

 private:
  std::vector<Tensor<T>> saved_;
};

// Runs F (constructed from args) forward on the inputs' values and links it into the graph.
// needs_input_grad(i) is known inside forward(), so it can skip saving what backward will not need.
template <typename F, typename T, typename... Args>
std::vector<Var<T>> apply(const std::vector<Var<T>>& inputs, Args&&... args) {
  static_assert(std::is_base_of_v<Function<T>, F>, "apply<F>: F must derive from Function<T>");
  auto fn = std::make_shared<F>(std::forward<Args>(args)...);
  std::vector<Tensor<T>> values;
  values.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      detail::raise<AutogradError>("{}: input {} is an undefined Var", fn->name(), i);
    }
    values.push_back(inputs[i].value());
    fn->needs_.push_back(grad_enabled() && inputs[i].requires_grad());
  }
  std::vector<Tensor<T>> outputs;
  {
    NoGradGuard guard;
    outputs = fn->forward(values);
  }
  return attach<T>(fn, inputs, std::move(outputs));
}

// The node behind the built-in ops: a closure that maps the output gradient to input gradients.
template <typename T>
class LambdaNode : public Node<T> {
 public:
  using Backward = std::function<std::vector<Tensor<T>>(const Tensor<T>& grad, const Node<T>& self)>;
  LambdaNode(const char* name, Backward fn) : name_(name), fn_(std::move(fn)) {}
  std::vector<Tensor<T>> backward(const std::vector<Tensor<T>>& g) override { return fn_(g[0], *this); }
  void release() override { fn_ = nullptr; }
  std::string name() const override { return name_; }

 private:
  const char* name_;
  Backward fn_;
};

// One-output op: `value` computed already, `bw(grad, node)` returns one gradient per input. The closure is
// only kept (with what it captured) when some input requires grad.
template <typename T, typename Bw>
Var<T> make_op(const char* name, Tensor<T> value, const std::vector<Var<T>>& inputs, Bw&& bw) {
  bool any = false;
  if (grad_enabled()) {
    for (const auto& v : inputs) any = any || v.requires_grad();
  }
  if (!any) return Var<T>(std::move(value), false);
  auto node = std::make_shared<LambdaNode<T>>(name, std::forward<Bw>(bw));
  return attach<T>(node, inputs, {std::move(value)})[0];
}

}  // namespace dagpt
