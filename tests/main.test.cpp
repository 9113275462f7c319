// The Catch2 main of the CPU test binary (kept apart so the test files recompile alone).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
