// The memory check made before a model is allocated: a config whose parameters cannot fit
// (num_hidden_layers 1e9, a vocabulary of 1e12) is refused with both numbers instead of growing
// the process until the machine runs out.
#include "core/model/model_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "common/error.h"

namespace posttrain::core {

namespace {

std::string gib(long double bytes) {
  std::ostringstream s;
  s.precision(3);
  s << bytes / (1ull << 30) << " GiB";
  return s.str();
}

}  // namespace

int64_t parameter_count(const LlamaConfig& c) {
  // Floating point: a hostile config (num_hidden_layers 1e9, sizes near 2^63) must not
  // overflow, and the count only needs to be compared with memory.
  using Wide = long double;
  const Wide h = c.hidden_size, v = c.vocab_size, i = c.intermediate_size;
  const Wide hd = c.resolved_head_dim();
  const Wide q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const Wide layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;  // q,k,v,o, mlp, 2 norms
  Wide total = v * h + Wide(c.num_hidden_layers) * layer + h;           // embed, layers, norm
  if (c.kind == ModelKind::kRewardModel) {
    total += h;  // score head
  } else if (!c.tie_word_embeddings) {
    total += v * h;  // lm_head
  }
  return total >= static_cast<Wide>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(total);
}

int64_t available_host_memory_bytes() {
  int64_t available = -1;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    int64_t kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") {
      available = kib * 1024;
      break;
    }
    meminfo.ignore(1 << 10, '\n');
  }
  if (available < 0) {
    available = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  }
  struct rlimit as {};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    available = std::min<int64_t>(available, static_cast<int64_t>(as.rlim_cur));
  }
  return available;
}

void check_model_fits(const LlamaConfig& config, int64_t bytes_per_parameter,
                      int64_t available_bytes, const std::string& what) {
  const long double needed =
      static_cast<long double>(parameter_count(config)) * bytes_per_parameter;
  if (needed <= static_cast<long double>(available_bytes)) return;
  std::ostringstream count;
  count << parameter_count(config);
  throw UsageError(what + ": the model's " + count.str() + " parameters need " + gib(needed) +
                   " (" + std::to_string(bytes_per_parameter) + " bytes each) but only " +
                   gib(available_bytes) +
                   " of memory is available; check num_hidden_layers, hidden_size, "
                   "intermediate_size and vocab_size in its config.json");
}

}  // namespace posttrain::core
