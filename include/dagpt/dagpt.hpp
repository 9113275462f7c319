// dagpt: a header-only library in which a GPT learns to execute arithmetic through a differentiable DAG
// executor. This umbrella header includes every layer that needs nothing beyond Eigen, fmt and OpenMP:
// io/ (nlohmann_json), train/ (toml++) and text/gpt2_bpe.hpp (nlohmann_json, utf8proc) are included on
// their own, with the targets dagpt::io, dagpt::train and dagpt::text.
#pragma once

#include "dagpt/autograd/function.hpp"
#include "dagpt/autograd/grad_check.hpp"
#include "dagpt/autograd/ops.hpp"
#include "dagpt/autograd/var.hpp"
#include "dagpt/core/device.hpp"
#include "dagpt/core/error.hpp"
#include "dagpt/core/format.hpp"
#include "dagpt/core/random.hpp"
#include "dagpt/core/shape.hpp"
#include "dagpt/core/tensor.hpp"
#include "dagpt/dag/dag.hpp"
#include "dagpt/data/stream.hpp"
#include "dagpt/expr/expr.hpp"
#include "dagpt/kernels/cpu/ops.hpp"
#include "dagpt/nn/functional.hpp"
#include "dagpt/nn/layers.hpp"
#include "dagpt/nn/module.hpp"
#include "dagpt/optim/adamw.hpp"
#include "dagpt/text/char_tokenizer.hpp"
#include "dagpt/text/tokenizer.hpp"
// Not dagpt/text/gpt2_bpe.hpp, which needs the dagpt::text target (nlohmann_json, utf8proc).
