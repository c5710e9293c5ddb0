// core/data/data_loss.h: which sources are reported, the words, warn vs error, and the config
// keys every training stage shares.
#include "core/data/data_loss.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "core/train/config.h"

namespace posttrain::core {
namespace {

TEST(DataLoss, ReportsOnlySourcesOverTheFractionStrictly) {
  DataLossPolicy p;  // 0.1, warn
  const std::vector<SourceLoss> sources = {
      {"a.jsonl", 10, 1, 0},   // 1/10 = 0.1: at the limit, not over it
      {"b.jsonl", 7, 2, 4},    // 6/7 = 0.857 -> 86%
      {"c.jsonl", 0, 0, 0},    // empty: nothing to say
      {"d.jsonl", 100, 0, 11}  // 11/100 = 0.11
  };
  const auto lines = describe_data_loss(sources, p, "data.max_seq_len");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].rfind("data.max_seq_len cut 6 of 7 examples of b.jsonl (86%: 2 "
                           "truncated, 4 dropped), more than data.max_dropped_fraction = 0.1",
                           0),
            0u)
      << lines[0];
  EXPECT_NE(lines[1].find("cut 11 of 100 examples of d.jsonl (11%: 0 truncated, 11 dropped)"),
            std::string::npos)
      << lines[1];
  p.max_fraction = 0.0;  // any cut at all is reported
  EXPECT_EQ(describe_data_loss(sources, p, "x").size(), 3u);
  p.max_fraction = 1.0;  // never
  EXPECT_TRUE(describe_data_loss(sources, p, "x").empty());
}

TEST(DataLoss, WarnWritesToTheStreamAndErrorThrowsOnEveryRank) {
  const std::vector<SourceLoss> sources = {{"b.jsonl", 7, 6, 0}};
  DataLossPolicy p;
  std::ostringstream err;
  check_data_loss(sources, p, "dpo train", "data.max_length", &err);
  EXPECT_EQ(err.str().rfind("warning: dpo train: data.max_length cut 6 of 7", 0), 0u) << err.str();
  EXPECT_NO_THROW(check_data_loss(sources, p, "dpo train", "data.max_length", nullptr));
  p.on_many = ManyDropped::kError;
  std::ostringstream none;
  try {
    check_data_loss(sources, p, "dpo train", "data.max_length", &none);
    FAIL() << "expected an error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("data.on_many_dropped = error stops the run"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(none.str().empty());
  EXPECT_THROW(check_data_loss(sources, p, "dpo train", "data.max_length", nullptr), UsageError);
}

TEST(DataLoss, ConfigKeysDefaultsAndChecks) {
  ConfigSchema s;
  add_data_loss_keys(&s);
  const auto c = s.resolve(nlohmann::json::object(), {}, "test");
  const DataLossPolicy p = data_loss_policy(c);
  EXPECT_DOUBLE_EQ(p.max_fraction, 0.1);
  EXPECT_EQ(p.on_many, ManyDropped::kWarn);
  const auto e = s.resolve(nlohmann::json::object(),
                           {"data.on_many_dropped=error", "data.max_dropped_fraction=0.25"}, "t");
  EXPECT_EQ(data_loss_policy(e).on_many, ManyDropped::kError);
  EXPECT_DOUBLE_EQ(data_loss_policy(e).max_fraction, 0.25);
  EXPECT_THROW(s.resolve(nlohmann::json::object(), {"data.on_many_dropped=stop"}, "t"), Error);
  EXPECT_THROW(s.resolve(nlohmann::json::object(), {"data.max_dropped_fraction=1.5"}, "t"), Error);
}

}  // namespace
}  // namespace posttrain::core
