// `dpo train` says on stderr when its length limit cuts most of a source (6 of 7 pairs
// truncated), and stops before training under data.on_many_dropped = error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/files.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace posttrain::dpo {
namespace {

using Json = nlohmann::json;

TEST(DpoDataLoss, ManyTruncatedPairsAreSaidAndCanStopTheRun) {
  const std::string root =
      (fs::temp_directory_path() / ("posttrain_dpo_loss_" + std::to_string(::getpid()))).string();
  posttrain::remove_tree(root);
  fs::create_directories(root);
  auto r = testing::run_cli("init --preset tiny --seed 3 --output " + root + "/model");
  ASSERT_EQ(r.code, 0) << r.output;
  // 7 pairs; 6 chosen responses of 300 bytes, far over max_length 64 (byte-level tokens).
  const std::string data = root + "/pairs.jsonl";
  {
    std::ofstream f(data);
    for (int i = 0; i < 7; ++i) {
      const std::string chosen = i < 6 ? std::string(300, 'a' + i) : "yes";
      f << Json{{"prompt", "Q" + std::to_string(i)}, {"chosen", chosen}, {"rejected", "no"}}.dump()
        << "\n";
    }
  }
  Json c = {{"model", {{"path", root + "/model"}}},
            {"data", {{"sources", {data}}, {"max_length", 64}, {"max_prompt_length", 32}}},
            {"training", {{"max_steps", 1}, {"micro_batch_size", 4}, {"threads", 1}}},
            {"output", {{"dir", root + "/out"}}}};
  std::ofstream(root + "/c.json") << c.dump(2);
  r = testing::run_cli("dpo train --config " + root + "/c.json");
  ASSERT_EQ(r.code, 0) << r.output;
  // 6 / 7 = 0.857 -> 86%, over the default 0.1.
  EXPECT_NE(r.output.find("warning: dpo train: data.max_length / data.max_prompt_length cut 6 "
                          "of 7 examples of " +
                          data + " (86%: 6 truncated, 0 dropped)"),
            std::string::npos)
      << r.output;

  posttrain::remove_tree(root + "/out");
  r = testing::run_cli("dpo train --config " + root + "/c.json --set data.on_many_dropped=error");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("cut 6 of 7 examples of " + data), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(root + "/out/model.safetensors"));
  posttrain::remove_tree(root);
}

}  // namespace
}  // namespace posttrain::dpo
