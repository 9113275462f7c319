// The DAG layer: plans, encode/decode, the executor.
#pragma once

#include "dagpt/dag/decode.hpp"
#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/executor.hpp"
#include "dagpt/dag/executor_composed.hpp"
#include "dagpt/dag/plan.hpp"
