// Config files in YAML read into the JSON the same file in JSON would give, with lines named.
#include "common/config_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "common/json_depth.h"

namespace posttrain {
namespace {

std::string thrown(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(YamlToJson, ScalarsFollowTheCoreSchema) {
  const nlohmann::json j = yaml_to_json(
      "a: 1\nb: -7\nc: 0x1f\nd: 0o17\ne: 1e-5\nf: .5\ng: 2.\nh: true\ni: False\nj: ~\nk:\n"
      "l: null\nm: yes\nn: '12'\no: \"true\"\np: !!str 3\nq: hello world\nr: "
      "18446744073709551615\n",
      "t.yaml");
  // Hand-resolved: ints, floats (1e-5 needs no dot, unlike YAML 1.1), bools, nulls; `yes` is a
  // string in YAML 1.2; quoted or !!str scalars stay strings.
  const nlohmann::json want = {{"a", 1},
                               {"b", -7},
                               {"c", 31},
                               {"d", 15},
                               {"e", 1e-5},
                               {"f", 0.5},
                               {"g", 2.0},
                               {"h", true},
                               {"i", false},
                               {"j", nullptr},
                               {"k", nullptr},
                               {"l", nullptr},
                               {"m", "yes"},
                               {"n", "12"},
                               {"o", "true"},
                               {"p", "3"},
                               {"q", "hello world"},
                               {"r", 18446744073709551615ull}};
  EXPECT_EQ(j, want);
  EXPECT_TRUE(j["a"].is_number_integer());
  EXPECT_TRUE(j["e"].is_number_float());
  EXPECT_TRUE(j["g"].is_number_float());
  EXPECT_TRUE(j["r"].is_number_unsigned());
}

TEST(YamlToJson, NestingListsAndKeyLines) {
  KeyLines lines;
  const std::string text =
      "# a comment\n"
      "data:\n"
      "  sources:\n"
      "    - path: a.jsonl\n"
      "      weight: 2\n"
      "    - {path: b.jsonl}\n"
      "optimizer: {lr: 0.001}\n";
  const nlohmann::json j = yaml_to_json(text, "t.yaml", &lines);
  const nlohmann::json want = nlohmann::json::parse(
      R"({"data": {"sources": [{"path": "a.jsonl", "weight": 2}, {"path": "b.jsonl"}]},
          "optimizer": {"lr": 0.001}})");
  EXPECT_EQ(j, want);
  // Lines counted by hand in `text` above.
  EXPECT_EQ(lines.at("data"), 2);
  EXPECT_EQ(lines.at("data.sources"), 3);
  EXPECT_EQ(lines.at("data.sources[0].weight"), 5);
  EXPECT_EQ(lines.at("data.sources[1].path"), 6);
  EXPECT_EQ(lines.at("optimizer.lr"), 7);
  ConfigDocument doc{"t.yaml", j, lines};
  EXPECT_EQ(doc.line_of("data.sources[1].path"), 6);
  EXPECT_EQ(doc.line_of("data.sources[1].nope"), 6);  // falls back to the enclosing key
  EXPECT_EQ(doc.line_of("other"), 0);
  const InputError located = doc.locate(InputError(Location{"t.yaml", 0, "optimizer.lr"}, "bad"));
  EXPECT_STREQ(located.what(), "t.yaml:7: field 'optimizer.lr': bad");
}

TEST(YamlToJson, ErrorsNameTheLine) {
  // Line 3 opens a flow sequence that never closes before a key at the outer level.
  EXPECT_NE(
      thrown([] { yaml_to_json("a: 1\nb: 2\nc: [1, 2\nd: 4\n", "bad.yaml"); }).find("bad.yaml:"),
      std::string::npos);
  const std::string tab = thrown([] { yaml_to_json("a:\n  b: 1\n c: 2\n", "bad.yaml"); });
  EXPECT_EQ(tab.rfind("bad.yaml:3:", 0), 0u) << tab;
  const std::string dup = thrown([] { yaml_to_json("a: 1\nb: 2\na: 3\n", "dup.yaml"); });
  EXPECT_EQ(dup.rfind("dup.yaml:3: field 'a': duplicate key", 0), 0u) << dup;
  const std::string inf = thrown([] { yaml_to_json("x:\n  lr: .inf\n", "inf.yaml"); });
  EXPECT_EQ(inf.rfind("inf.yaml:2:", 0), 0u) << inf;
  const std::string two = thrown([] { yaml_to_json("a: 1\n---\nb: 2\n", "two.yaml"); });
  EXPECT_NE(two.find("2 YAML documents"), std::string::npos) << two;
}

TEST(YamlToJson, DeepNestingIsRefused) {
  std::string deep;
  for (int i = 0; i < kMaxJsonDepth + 5; ++i) deep += "[";
  for (int i = 0; i < kMaxJsonDepth + 5; ++i) deep += "]";
  EXPECT_NE(thrown([&] { yaml_to_json(deep, "deep.yaml"); }).find("deeper than"),
            std::string::npos);
  // Far deeper: yaml-cpp's own guard stops its recursive parser first; still an InputError.
  const std::string hostile = "a: " + std::string(100000, '[');
  const std::string e = thrown([&] { yaml_to_json(hostile, "hostile.yaml"); });
  EXPECT_EQ(e.rfind("hostile.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find("deeper than"), std::string::npos) << e;
}

TEST(ReadConfigFile, ExtensionPicksTheFormat) {
  const auto dir = std::filesystem::temp_directory_path() / "posttrain_config_file_test";
  std::filesystem::create_directories(dir);
  const std::string json_path = (dir / "c.json").string(), yaml_path = (dir / "c.YML").string();
  std::ofstream(json_path) << "// comment\n{\"model\": {\"path\": \"m\", \"n\": [1, 2.5]}}\n";
  std::ofstream(yaml_path) << "model:\n  path: m\n  n: [1, 2.5]\n";
  EXPECT_TRUE(is_yaml_path(yaml_path));
  EXPECT_FALSE(is_yaml_path(json_path));
  const ConfigDocument a = read_config_file(json_path), b = read_config_file(yaml_path);
  EXPECT_EQ(a.value, b.value);
  EXPECT_TRUE(a.key_lines.empty());
  EXPECT_EQ(b.key_lines.at("model.n"), 3);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace posttrain
