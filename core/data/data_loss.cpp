#include "core/data/data_loss.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/train/config.h"

namespace posttrain::core {

namespace {

std::string check_fraction(const nlohmann::json& v) {
  const double x = v.get<double>();
  return x >= 0 && x <= 1 ? "" : "must be in [0, 1]";
}

// "0.1" rather than "0.100000".
std::string short_number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

}  // namespace

void add_data_loss_keys(ConfigSchema* s) {
  using T = ConfigType;
  s->add({"data", "max_dropped_fraction", T::kFloat, 0.1, false, {},
          "share of a source's examples the length limit may truncate or drop before the run "
          "says so on stderr (or stops, see data.on_many_dropped)",
          check_fraction});
  s->add({"data", "on_many_dropped", T::kString, "warn", false, {"warn", "error"},
          "when a source's truncated + dropped share exceeds data.max_dropped_fraction: warn = "
          "say so on stderr and train; error = stop before training"});
}

DataLossPolicy data_loss_policy(const nlohmann::json& c) {
  const auto& d = c.at("data");
  DataLossPolicy p;
  p.max_fraction = d.at("max_dropped_fraction").get<double>();
  const std::string on = d.at("on_many_dropped").get<std::string>();
  if (on == "warn") {
    p.on_many = ManyDropped::kWarn;
  } else if (on == "error") {
    p.on_many = ManyDropped::kError;
  } else {
    throw InputError(Location{"", 0, "data.on_many_dropped"},
                     "unknown value '" + on + "' (warn, error)");
  }
  return p;
}

std::vector<std::string> describe_data_loss(const std::vector<SourceLoss>& sources,
                                            const DataLossPolicy& p, const std::string& limit) {
  std::vector<std::string> out;
  for (const auto& s : sources) {
    const int64_t cut = s.truncated + s.dropped;
    if (s.read <= 0 || cut == 0) continue;
    const double share = static_cast<double>(cut) / static_cast<double>(s.read);
    if (share <= p.max_fraction) continue;
    std::string line = limit + " cut " + std::to_string(cut) + " of " +
                       std::to_string(s.read) + " examples of " + s.source + " (" +
                       std::to_string(static_cast<int64_t>(std::lround(share * 100))) + "%: " +
                       std::to_string(s.truncated) + " truncated, " + std::to_string(s.dropped) +
                       " dropped), more than data.max_dropped_fraction = " +
                       short_number(p.max_fraction);
    if (p.on_many == ManyDropped::kWarn) {
      line += "; training goes on with the rest (raise " + limit +
              ", or set data.on_many_dropped=error to stop such runs)";
    } else {
      line += "; data.on_many_dropped = error stops the run (raise " + limit +
              " or data.max_dropped_fraction)";
    }
    out.push_back(std::move(line));
  }
  return out;
}

void check_data_loss(const std::vector<SourceLoss>& sources, const DataLossPolicy& p,
                     const std::string& stage, const std::string& limit, std::ostream* warn) {
  const auto lines = describe_data_loss(sources, p, limit);
  if (lines.empty()) return;
  if (p.on_many == ManyDropped::kError) {
    std::string msg;
    for (const auto& l : lines) msg += (msg.empty() ? "" : "; ") + l;
    throw UsageError(msg);
  }
  if (warn == nullptr) return;
  for (const auto& l : lines) *warn << "warning: " << stage << ": " << l << std::endl;
}

}  // namespace posttrain::core
