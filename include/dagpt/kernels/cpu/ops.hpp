// All CPU kernels: elementwise, reductions, matrix products, softmax, indexing.
#pragma once

#include "dagpt/kernels/cpu/elementwise.hpp"
#include "dagpt/kernels/cpu/index.hpp"
#include "dagpt/kernels/cpu/matmul.hpp"
#include "dagpt/kernels/cpu/reduce.hpp"
#include "dagpt/kernels/cpu/softmax.hpp"
