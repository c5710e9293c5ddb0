// Reading back the synthetic problems `synth --store` recorded, by round: what rejection
// sampling (`posttrain sample` with prompts.store) draws its prompts and checkers from.
#pragma once

#include <cstdint>
#include <vector>

#include "datastore/store.h"

namespace posttrain::datastore {

struct StoredProblem : SyntheticProblem {
  int64_t id = 0;
};

// The problems of `round`, in id order (the order synth stored them).
std::vector<StoredProblem> synthetic_problems(Store& store, int round);

}  // namespace posttrain::datastore
