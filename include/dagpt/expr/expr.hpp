// The expression front-end: parse, normalize, print, evaluate, generate, per-token prefixes.
// Standalone (no tensors): usable as a calculator library.
#pragma once

#include "dagpt/expr/ast.hpp"
#include "dagpt/expr/evaluate.hpp"
#include "dagpt/expr/generator.hpp"
#include "dagpt/expr/normalize.hpp"
#include "dagpt/expr/parser.hpp"
#include "dagpt/expr/prefix.hpp"
#include "dagpt/expr/printer.hpp"
#include "dagpt/expr/rational.hpp"
