// dagpt error types: every exception the library throws derives from dagpt::Error, and carries the
// bad value and where it came from in its message (built with fmt).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace dagpt {

// Base of every dagpt exception.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Shapes that do not fit the op (the message names the op and every shape involved).
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An index, axis or range outside its bounds.
class IndexError : public Error {
 public:
  using Error::Error;
};

// Tensors on different devices in one op, or a device without a backend.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A value outside its allowed domain (a bad argument, an impossible option).
class ValueError : public Error {
 public:
  using Error::Error;
};

// Autograd misuse: backward on a non-scalar without a gradient, a non-differentiable op, ...
class AutogradError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename E, typename... Args>
[[noreturn]] void raise(fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format(f, std::forward<Args>(args)...));
}
}  // namespace detail

}  // namespace dagpt
