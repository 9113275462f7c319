// The DAG layer: plans, encode/decode, the executor, the predictor model, its losses and metrics.
#pragma once

#include "dagpt/dag/decode.hpp"
#include "dagpt/dag/digits.hpp"
#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/executor.hpp"
#include "dagpt/dag/executor_composed.hpp"
#include "dagpt/dag/loss.hpp"
#include "dagpt/dag/model.hpp"
#include "dagpt/dag/plan.hpp"
