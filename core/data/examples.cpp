#include "core/data/examples.h"

#include "core/logprobs.h"

namespace posttrain::core {

int64_t TokenizedExample::num_targets() const {
  int64_t n = 0;
  for (int64_t t : targets) n += t != kIgnoreTarget;
  return n;
}

TokenizedExample make_targets(std::vector<int64_t> ids, const std::vector<uint8_t>& mask) {
  TokenizedExample ex;
  ex.targets.assign(ids.size(), kIgnoreTarget);
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    if (mask[t + 1]) ex.targets[t] = ids[t + 1];
  }
  ex.ids = std::move(ids);
  return ex;
}

}  // namespace posttrain::core
