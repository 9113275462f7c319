// Module: a tree of named parameters with nanoGPT's dotted names ("transformer.h.0.attn.c_attn.weight"),
// train/eval mode, a state dict (name -> tensor, in registration order) and a parameter count.
//
//   struct Affine : nn::Module<float> {
//     Var<float> w = register_parameter("weight", Tensor<float>::ones({4}));
//   };
//
// Modules are neither copied nor moved (children are registered by address). Parameters are Vars that
// require grad; an optimizer updates their values in place.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dagpt/autograd/var.hpp"
#include "dagpt/core/error.hpp"

namespace dagpt::nn {

template <typename T>
using StateDict = std::vector<std::pair<std::string, Tensor<T>>>;

template <typename T>
class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;
  virtual ~Module() = default;

  // Every parameter below this module, depth-first in registration order, with dotted names.
  std::vector<std::pair<std::string, Var<T>>> named_parameters() const {
    std::vector<std::pair<std::string, Var<T>>> out;
    collect("", out);
    return out;
  }
  std::vector<Var<T>> parameters() const {
    std::vector<Var<T>> out;
    for (auto& [name, p] : named_parameters()) out.push_back(p);
    return out;
  }
  std::int64_t num_parameters() const {
    std::int64_t n = 0;
    for (auto& [name, p] : named_parameters()) n += p.numel();
    return n;
  }

  void train(bool on = true) {
    training_ = on;
    for (auto& [name, m] : children_) m->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad() {
    for (auto& [name, p] : named_parameters()) p.zero_grad();
  }

  // Shallow copies of the parameter values (they share storage with the model): clone to keep them.
  StateDict<T> state_dict() const {
    StateDict<T> out;
    for (auto& [name, p] : named_parameters()) out.emplace_back(name, p.value());
    return out;
  }

  // Copies values into the parameters. Strict: every parameter must be present, no extra entries, and
  // each shape must match; errors name the parameter.
  void load_state_dict(const std::map<std::string, Tensor<T>>& dict, bool strict = true) {
    auto params = named_parameters();
    std::size_t used = 0;
    for (auto& [name, p] : params) {
      auto it = dict.find(name);
      if (it == dict.end()) {
        if (strict) dagpt::detail::raise<ValueError>("load_state_dict: parameter '{}' is missing", name);
        continue;
      }
      ++used;
      if (it->second.shape() != p.shape()) {
        dagpt::detail::raise<ShapeError>(
            "load_state_dict: '{}' has shape {} in the state dict, {} in the model", name,
            it->second.shape().str(), p.shape().str());
      }
      const Tensor<T> src = it->second.contiguous();
      std::copy_n(src.data(), src.numel(), p.value().data());
    }
    if (strict && used != dict.size()) {
      for (auto& [name, t] : dict) {
        bool known = false;
        for (auto& [pn, p] : params) known = known || pn == name;
        if (!known) dagpt::detail::raise<ValueError>("load_state_dict: unexpected entry '{}'", name);
      }
    }
  }

 protected:
  Var<T> register_parameter(const std::string& name, Tensor<T> init) {
    Var<T> v(std::move(init), true);
    params_.emplace_back(name, v);
    return v;
  }
  void register_module(const std::string& name, Module& child) { children_.emplace_back(name, &child); }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Var<T>>>& out) const {
    for (auto& [name, p] : params_) out.emplace_back(prefix + name, p);
    for (auto& [name, m] : children_) m->collect(prefix + name + ".", out);
  }

  std::vector<std::pair<std::string, Var<T>>> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace dagpt::nn
