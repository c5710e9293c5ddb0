// JSONL export: one shape per file, strength and margin columns, round trip through import,
// --as, --expand-rankings, openrlhf's conventions and keys, filters, deterministic order and
// duplicate dropping. (tests/fixtures/datastore/check_export_datasets.py loads such files with
// `datasets`.)
#include "datastore/export.h"

#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "datastore/import.h"
#include "datastore/store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::read_file;
using testing::read_lines;
using testing::TempDir;
using testing::write_file;

const char* kMixed =
    R"({"prompt":"Q1 \"quoted\"","chosen":"good","rejected":"bad","strength":"better","annotator":"a1"})"
    "\n"
    R"({"prompt":[{"role":"system","content":"S"},{"role":"user","content":"Q2"}],"chosen":[{"role":"assistant","content":"A"}],"rejected":[{"role":"assistant","content":"B"}],"strength":"marginally_better","round":1})"
    "\n"
    R"({"prompt":"Q3","chosen":"c3","rejected":"r3","edited":"e3","round":2,"source":"vendor"})"
    "\n";

void load_mixed(Store& store, const TempDir& dir) {
  write_file(dir / "mixed.jsonl", kMixed);
  ImportOptions opt;
  opt.format = ImportFormat::kAnnotations;
  import_jsonl(store, dir / "mixed.jsonl", opt);
}

std::vector<Json> export_rows(Store& store, const TempDir& dir, const ExportOptions& opt) {
  export_jsonl(store, dir / "out.jsonl", opt);
  std::vector<Json> rows;
  for (const auto& line : read_lines(dir / "out.jsonl")) rows.push_back(Json::parse(line));
  return rows;
}

TEST(Export, TrlWritesOneShapePerFileAndTheStrength) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  load_mixed(store, dir);
  auto rows = export_rows(store, dir, {});
  ASSERT_EQ(rows.size(), 3u);
  // Row 2 holds messages, so every value is a message list: text prompts become a user turn,
  // text responses an assistant turn.
  EXPECT_EQ(rows[0], Json::parse(R"({"prompt":[{"role":"user","content":"Q1 \"quoted\""}],
      "chosen":[{"role":"assistant","content":"good"}],
      "rejected":[{"role":"assistant","content":"bad"}],"strength":"better"})"));
  EXPECT_EQ(rows[1]["prompt"][0]["role"], "system");
  EXPECT_EQ(rows[1]["chosen"], Json::parse(R"([{"role":"assistant","content":"A"}])"));
  EXPECT_EQ(rows[1]["strength"], "marginally_better");
  EXPECT_TRUE(rows[2]["strength"].is_null());
  for (const Json& r : rows) {
    for (const char* k : {"prompt", "chosen", "rejected"}) EXPECT_TRUE(r[k].is_array()) << r;
  }
  // A store of texts stays text; keys come in prompt, chosen, rejected, strength order.
  auto texts = Store::open(dir / "t.db");
  write_file(dir / "t.jsonl", R"({"prompt":"Q3","chosen":"c3","rejected":"r3"})"
                              "\n");
  import_jsonl(texts, dir / "t.jsonl", ImportOptions{});
  export_jsonl(texts, dir / "t_out.jsonl", {});
  EXPECT_EQ(read_lines(dir / "t_out.jsonl")[0],
            R"({"prompt":"Q3","chosen":"c3","rejected":"r3","strength":null})");
}

TEST(Export, RoundTripGivesTheSameRows) {
  TempDir dir;
  auto a = Store::open(dir / "a.db");
  load_mixed(a, dir);
  ExportOptions opt;
  export_jsonl(a, dir / "first.jsonl", opt);
  auto b = Store::open(dir / "b.db");
  ImportOptions imp;
  imp.format = ImportFormat::kAnnotations;  // a trl row that reads the strength column back
  import_jsonl(b, dir / "first.jsonl", imp);
  export_jsonl(b, dir / "second.jsonl", opt);
  EXPECT_EQ(read_file(dir / "first.jsonl"), read_file(dir / "second.jsonl"));
  auto pa = a.pairs(), pb = b.pairs();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(to_messages(pa[i].prompt, "user"), pb[i].prompt);
    EXPECT_EQ(to_messages(pa[i].chosen, "assistant"), pb[i].chosen);
    EXPECT_EQ(to_messages(pa[i].rejected, "assistant"), pb[i].rejected);
  }
  // Importing the export again into the same store adds nothing.
  auto again = import_jsonl(b, dir / "first.jsonl", imp);
  EXPECT_EQ(again.imported, 0);
  EXPECT_EQ(again.duplicates, 3);

  // Dialogues round-trip the same way.
  write_file(dir / "d.jsonl",
             R"({"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]})"
             "\n");
  ImportOptions md;
  md.format = ImportFormat::kMessages;
  import_jsonl(a, dir / "d.jsonl", md);
  ExportOptions mo;
  mo.format = ExportFormat::kMessages;
  export_jsonl(a, dir / "d2.jsonl", mo);
  EXPECT_EQ(Json::parse(read_file(dir / "d2.jsonl")), Json::parse(read_file(dir / "d.jsonl")));
}

TEST(Export, AsForcesOneShape) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  load_mixed(store, dir);
  ExportOptions opt;
  opt.as = Shape::kMessages;
  auto rows = export_rows(store, dir, opt);
  EXPECT_EQ(rows[0]["prompt"], Json::parse(R"([{"role":"user","content":"Q1 \"quoted\""}])"));
  EXPECT_EQ(rows[0]["chosen"], Json::parse(R"([{"role":"assistant","content":"good"}])"));
  opt.as = Shape::kText;
  rows = export_rows(store, dir, opt);
  EXPECT_EQ(rows[1]["prompt"], "\n\nSystem: S\n\nHuman: Q2");
  EXPECT_EQ(rows[1]["chosen"], "A");
}

TEST(Export, ExpandRankingsAndDropDuplicates) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  write_file(dir / "r.jsonl",
             R"({"prompt":"P","responses":["a","b","c"],"ranking":[0,1,2],"edited":"E"})"
             "\n");
  ImportOptions imp;
  imp.format = ImportFormat::kRanking;
  import_jsonl(store, dir / "r.jsonl", imp);
  ExportOptions opt;
  opt.expand_rankings = true;
  ExportSummary s = export_jsonl(store, dir / "out.jsonl", opt);
  // Pairs a>b, a>c, b>c each carry E: E>a, E>b, a>b | E>a (dup), E>c, a>c | E>b (dup), E>c (dup),
  // b>c.
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& line : read_lines(dir / "out.jsonl")) {
    Json j = Json::parse(line);
    got.emplace_back(j["chosen"], j["rejected"]);
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"E", "a"}, {"E", "b"}, {"a", "b"}, {"E", "c"}, {"a", "c"}, {"b", "c"}}));
  EXPECT_EQ(s.rows, 6);
  EXPECT_EQ(s.duplicates, 3);
  opt.expand_rankings = false;
  EXPECT_EQ(export_rows(store, dir, opt).size(), 3u);
}

TEST(Export, MarginColumnFromStrength) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  load_mixed(store, dir);  // better, marginally_better, unlabelled with an edit
  ExportOptions opt;
  opt.margin = true;
  auto rows = export_rows(store, dir, opt);
  ASSERT_EQ(rows.size(), 3u);
  // datastore/strength.h: better 2/3, marginally_better 0, unlabelled 0.
  EXPECT_DOUBLE_EQ(rows[0]["margin"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(rows[1]["margin"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(rows[2]["margin"].get<double>(), 0.0);
  EXPECT_FALSE(export_rows(store, dir, {})[0].contains("margin"));
  // Expanded: E>chosen carries no label (0); E>rejected and chosen>rejected carry the pair's.
  write_file(dir / "e.jsonl",
             R"({"prompt":"P","chosen":"c","rejected":"r","edited":"E","strength":"significantly_better"})"
             "\n");
  ImportOptions imp;
  imp.format = ImportFormat::kAnnotations;
  import_jsonl(store, dir / "e.jsonl", imp);
  opt.expand_rankings = true;
  opt.filter.min_strength = Strength::kSignificantlyBetter;
  rows = export_rows(store, dir, opt);
  std::vector<std::tuple<std::string, std::string, double>> got;
  for (const auto& j : rows) {
    if (j["prompt"] == "P") got.emplace_back(j["chosen"], j["rejected"], j["margin"]);
  }
  EXPECT_EQ(got, (std::vector<std::tuple<std::string, std::string, double>>{
                     {"E", "c", 0.0}, {"E", "r", 1.0}, {"c", "r", 1.0}}));
}

TEST(Export, OpenRlhfWholeConversationsAndKeys) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  load_mixed(store, dir);
  ExportOptions opt;
  opt.format = ExportFormat::kOpenRlhf;
  // OpenRLHF's default: no prompt key, chosen/rejected whole conversations as message lists.
  auto rows = export_rows(store, dir, opt);
  EXPECT_EQ(rows[0], Json::parse(R"({"chosen":[{"role":"user","content":"Q1 \"quoted\""},
      {"role":"assistant","content":"good"}],"rejected":[{"role":"user","content":
      "Q1 \"quoted\""},{"role":"assistant","content":"bad"}],"strength":"better"})"));
  EXPECT_EQ(rows[1]["chosen"], Json::parse(R"([{"role":"system","content":"S"},
      {"role":"user","content":"Q2"},{"role":"assistant","content":"A"}])"));
  EXPECT_NE(read_file(dir / "out.jsonl"),
            (export_jsonl(store, dir / "trl.jsonl", {}), read_file(dir / "trl.jsonl")));
  // The old bug: an empty prompt key with --as messages glued the prompt into the assistant.
  opt.prompt_key = "";
  opt.as = Shape::kMessages;
  EXPECT_EQ(export_rows(store, dir, opt)[0]["chosen"][0],
            Json::parse(R"({"role":"user","content":"Q1 \"quoted\""})"));
  opt.as = Shape::kText;
  rows = export_rows(store, dir, opt);
  EXPECT_EQ(rows[0]["chosen"], "Q1 \"quoted\"good");
  EXPECT_EQ(rows[1]["chosen"], "\n\nSystem: S\n\nHuman: Q2\n\nAssistant: A");
  opt.as.reset();
  opt.prompt_key = "input";
  opt.chosen_key = "win";
  opt.rejected_key = "lose";
  rows = export_rows(store, dir, opt);
  EXPECT_EQ(rows[0], Json::parse(R"({"input":[{"role":"user","content":"Q1 \"quoted\""}],
      "win":[{"role":"assistant","content":"good"}],
      "lose":[{"role":"assistant","content":"bad"}],"strength":"better"})"));
}

TEST(Export, FiltersAndDeterministicOrder) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  load_mixed(store, dir);
  ExportOptions opt;
  opt.filter.rounds = {1, 2};
  auto rows = export_rows(store, dir, opt);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["prompt"], Json::parse(R"([{"role":"user","content":"Q3"}])"));
  opt.filter = {};
  opt.filter.min_strength = Strength::kBetter;  // better + unlabelled
  rows = export_rows(store, dir, opt);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["prompt"], "Q1 \"quoted\"");
  EXPECT_EQ(rows[1]["prompt"], "Q3");
  opt.filter = {};
  opt.filter.source = "vendor";
  EXPECT_EQ(export_rows(store, dir, opt).size(), 1u);
  opt.filter = {};
  opt.filter.annotator = "a1";
  EXPECT_EQ(export_rows(store, dir, opt).size(), 1u);
  opt.filter = {};
  export_jsonl(store, dir / "x1.jsonl", opt);
  export_jsonl(store, dir / "x2.jsonl", opt);
  EXPECT_EQ(read_file(dir / "x1.jsonl"), read_file(dir / "x2.jsonl"));
  EXPECT_THROW(export_jsonl(store, dir.path() + "/no/such/dir/out.jsonl", opt), IoError);
}

// tests/fixtures/datastore/check_export_datasets.py loaded these exports with Hugging Face
// `datasets` (exports/datasets.json says what it read); the same imports and exports today must
// give the same bytes, so what `datasets` accepted is what we write.
TEST(Export, FilesThatDatasetsLoadedAreWhatWeWrite) {
  const std::string fx = std::string(POSTTRAIN_FIXTURES) + "/datastore/";
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  for (auto [format, file] : std::vector<std::pair<ImportFormat, std::string>>{
           {ImportFormat::kAnnotations, "annotations.jsonl"},
           {ImportFormat::kHhRlhf, "hh_rlhf.jsonl"},
           {ImportFormat::kRanking, "ranking.jsonl"},
           {ImportFormat::kTrl, "trl_implicit.jsonl"},
           {ImportFormat::kMessages, "messages.jsonl"}}) {
    ImportOptions o;
    o.format = format;
    import_jsonl(store, fx + file, o);
  }
  const Json loaded = Json::parse(read_file(fx + "exports/datasets.json"));
  std::map<std::string, ExportOptions> cases;
  cases["trl"] = {};
  cases["trl_margin"].margin = true;
  cases["trl_text"].as = Shape::kText;
  cases["trl_expanded"].expand_rankings = true;
  cases["openrlhf"].format = ExportFormat::kOpenRlhf;
  cases["openrlhf_prompt"].format = ExportFormat::kOpenRlhf;
  cases["openrlhf_prompt"].prompt_key = "prompt";
  cases["openrlhf_prompt"].margin = true;
  cases["messages"].format = ExportFormat::kMessages;
  ASSERT_EQ(loaded.size(), cases.size());
  for (const auto& [name, opt] : cases) {
    SCOPED_TRACE(name);
    export_jsonl(store, dir / (name + ".jsonl"), opt);
    const std::string committed = read_file(fx + "exports/" + name + ".jsonl");
    EXPECT_EQ(read_file(dir / (name + ".jsonl")), committed);
    const auto lines = read_lines(fx + "exports/" + name + ".jsonl");
    EXPECT_GT(lines.size(), 1u);
    EXPECT_EQ(loaded.at(name).at("rows").get<size_t>(), lines.size());
    EXPECT_EQ(loaded.at(name).at("arrow_rows").get<size_t>(), lines.size());
    if (name == "messages") continue;
    for (const auto& [column, feature] : loaded.at(name).at("features").items()) {
      // `datasets` falls back to Json for a column of mixed types; ours must have one type.
      EXPECT_EQ(feature.get<std::string>().find("Json("), std::string::npos) << column;
    }
  }
  // One type per column: hh-rlhf's message lists made every prompt a list in trl.
  EXPECT_NE(loaded["trl"]["features"]["prompt"].get<std::string>().find("List"),
            std::string::npos);
  EXPECT_NE(loaded["trl_margin"]["features"]["margin"].get<std::string>().find("float"),
            std::string::npos);
}

}  // namespace
}  // namespace posttrain::datastore
