// JSONL import: every format, every kind of bad input (named by file, line and field), the
// all-or-nothing default and --skip-bad.
#include "datastore/import.h"

#include <gtest/gtest.h>

#include <random>

#include "common/hex.h"
#include "common/jsonl.h"
#include "common/sha256.h"
#include "datastore/internal.h"
#include "datastore/store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::TempDir;
using testing::write_file;

Json msgs(const std::string& role, const std::string& content) {
  return Json::array({Json{{"role", role}, {"content", content}}});
}

ImportSummary import_text(Store& store, const TempDir& dir, const std::string& text,
                          ImportOptions opt) {
  write_file(dir / "in.jsonl", text);
  return import_jsonl(store, dir / "in.jsonl", opt);
}

ImportOptions fmt(ImportFormat f) {
  ImportOptions o;
  o.format = f;
  return o;
}

TEST(Import, TrlKeepsShapesAndCountsDuplicates) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string text =
      R"({"prompt":"Q1","chosen":"good","rejected":"bad"})"
      "\n\n"  // blank lines are skipped
      R"({"prompt":[{"role":"user","content":"Q2"}],"chosen":[{"role":"assistant","content":"A"}],"rejected":[{"role":"assistant","content":"B"}],"extra":1})"
      "\n"
      R"({"prompt":"Q1","chosen":"good","rejected":"bad"})"
      "\n";
  ImportOptions opt = fmt(ImportFormat::kTrl);
  opt.round = 3;
  ImportSummary s = import_text(store, dir, text, opt);
  EXPECT_EQ(s.lines, 3);
  EXPECT_EQ(s.imported, 2);
  EXPECT_EQ(s.duplicates, 1);
  EXPECT_EQ(s.skipped, 0);
  auto pairs = store.pairs();
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].prompt, "Q1");
  EXPECT_EQ(pairs[0].source, "in");  // the file name without extension
  EXPECT_EQ(pairs[0].round, 3);
  EXPECT_EQ(pairs[1].prompt, msgs("user", "Q2"));
  EXPECT_EQ(pairs[1].rejected, msgs("assistant", "B"));
}

// TRL's implicit-prompt form: no "prompt", chosen and rejected share it.
TEST(Import, TrlImplicitPromptIsTheCommonPrefix) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string text =
      R"({"chosen":[{"role":"system","content":"S"},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}],"rejected":[{"role":"system","content":"S"},{"role":"user","content":"2+2?"},{"role":"assistant","content":"5"},{"role":"user","content":"sure?"}]})"
      "\n"
      R"({"chosen":"The sky is blue.","rejected":"The sky is green.","prompt":null})"
      "\n"
      R"({"chosen":"Maß Öl","rejected":"Maß Übel"})"
      "\n";
  ImportSummary s = import_text(store, dir, text, fmt(ImportFormat::kTrl));
  EXPECT_EQ(s.imported, 3);
  auto pairs = store.pairs();
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0].prompt, Json::parse(R"([{"role":"system","content":"S"},
                                             {"role":"user","content":"2+2?"}])"));
  EXPECT_EQ(pairs[0].chosen, msgs("assistant", "4"));
  EXPECT_EQ(pairs[0].rejected, Json::parse(R"([{"role":"assistant","content":"5"},
                                               {"role":"user","content":"sure?"}])"));
  // Texts split at the first differing character; the space before it goes with the answers
  // (TRL's extract_prompt does the same).
  EXPECT_EQ(pairs[1].prompt, "The sky is");
  EXPECT_EQ(pairs[1].chosen, " blue.");
  EXPECT_EQ(pairs[1].rejected, " green.");
  // Ö and Ü share their first UTF-8 byte (C3); the cut never splits a character.
  EXPECT_EQ(pairs[2].prompt, "Maß");
  EXPECT_EQ(pairs[2].chosen, " Öl");
  EXPECT_EQ(pairs[2].rejected, " Übel");
}

TEST(Import, HhRlhfSplitsTheSharedPrompt) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  Json row = {{"chosen", "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: 4"},
              {"rejected", "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: 5"}};
  ImportSummary s = import_text(store, dir, row.dump() + "\n", fmt(ImportFormat::kHhRlhf));
  EXPECT_EQ(s.imported, 1);
  auto p = store.pairs().at(0);
  EXPECT_EQ(p.prompt, Json::parse(R"([{"role":"user","content":"Hi"},
                                      {"role":"assistant","content":"Hello!"},
                                      {"role":"user","content":"2+2?"}])"));
  EXPECT_EQ(p.chosen, msgs("assistant", "4"));
  EXPECT_EQ(p.rejected, msgs("assistant", "5"));
}

TEST(Import, RankingBecomesEveryOrderedPairWithTheEdit) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string line =
      R"({"prompt":"P","responses":["r0","r1","r2"],"ranking":[2,0,1],"edited":"r2+"})";
  ImportSummary s = import_text(store, dir, line + "\n", fmt(ImportFormat::kRanking));
  EXPECT_EQ(s.imported, 3);  // r2>r0, r2>r1, r0>r1
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& p : store.pairs()) {
    got.emplace_back(p.chosen.get<std::string>(), p.rejected.get<std::string>());
    EXPECT_EQ(p.edited, "r2+");
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"r2", "r0"}, {"r2", "r1"}, {"r0", "r1"}}));
}

TEST(Import, AnnotationsCarryStrengthAnnotatorRoundSource) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string text =
      R"({"prompt":"P","chosen":"c","rejected":"r","strength":"significantly_better","annotator":"ann1","edited":"c!","round":4,"source":"vendor"})"
      "\n"
      R"({"prompt":"P2","chosen":"c","rejected":"r","strength":null})"
      "\n";
  ImportOptions opt = fmt(ImportFormat::kAnnotations);
  opt.round = 1;
  opt.source = "flag";
  import_text(store, dir, text, opt);
  auto pairs = store.pairs();
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].strength, Strength::kSignificantlyBetter);
  EXPECT_EQ(pairs[0].annotator, "ann1");
  EXPECT_EQ(pairs[0].edited, "c!");
  EXPECT_EQ(pairs[0].round, 4);
  EXPECT_EQ(pairs[0].source, "vendor");
  EXPECT_FALSE(pairs[1].strength);
  EXPECT_EQ(pairs[1].round, 1);
  EXPECT_EQ(pairs[1].source, "flag");
}

TEST(Import, MessagesGoToDialogues) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string d =
      R"({"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a","weight":1}]})";
  ImportOptions opt = fmt(ImportFormat::kMessages);
  opt.round = 2;
  ImportSummary s = import_text(store, dir, d + "\n" + d + "\n", opt);
  EXPECT_EQ(s.imported, 1);
  EXPECT_EQ(s.duplicates, 1);
  auto ds = store.dialogues({2});
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].messages[1]["weight"], 1);
}

// The SAX reader of flat TRL lines against the DOM path: for values with escapes, quotes,
// control characters and non-ASCII text, each spelled several ways in the line (raw UTF-8,
// \u escapes with surrogate pairs, extra whitespace, other key orders, an ignored extra
// string field), it must give exactly what canonicalize() gives for the parsed value, whose
// digest is SHA-256 of nlohmann's dump() of the string.
TEST(Import, SaxTrlLineMatchesTheDomPath) {
  const std::vector<std::string> values = {
      "plain text",
      "say \"hi\" \\ back\\slash / slash",
      "line\nbreak\ttab\rcr\bbs\ffeed",
      std::string("nul\0byte", 8),
      "\x01\x1f ctl and \x7f del",
      "emoji 🙂 数据 é",
      "Robert'); DROP TABLE preference_pairs;--",
  };
  for (const std::string& v : values) {
    Json row{{"prompt", v}, {"chosen", v + " (c)"}, {"rejected", v + " (r)"}};
    std::vector<std::string> lines = {
        row.dump(),
        row.dump(-1, ' ', /*ensure_ascii=*/true),
        row.dump(1),  // newlines and indents between tokens
        Json{{"rejected", v + " (r)"},
             {"note", "ignored \"x\""},
             {"prompt", v},
             {"chosen", v + " (c)"}}
            .dump(),
    };
    for (const std::string& line : lines) {
      SCOPED_TRACE(line);
      internal::TrlStrings got;
      ASSERT_TRUE(internal::parse_trl_sax(line, &got));
      Json parsed = Json::parse(line);
      const Canonical* sax[3] = {&got.prompt, &got.chosen, &got.rejected};
      const char* names[3] = {"prompt", "chosen", "rejected"};
      for (int k = 0; k < 3; ++k) {
        Canonical dom = canonicalize(parsed[names[k]], Location{});
        EXPECT_EQ(sax[k]->shape, Shape::kText);
        EXPECT_EQ(sax[k]->text, dom.text);
        EXPECT_EQ(sax[k]->digest, dom.digest);
        EXPECT_EQ(sax[k]->text, Json(parsed[names[k]].get<std::string>()).dump());
        EXPECT_EQ(to_hex(sax[k]->digest), sha256_hex(sax[k]->text));
      }
      EXPECT_EQ(got.prompt.text, Json(v).dump());
    }
  }
}

// Lines the SAX reader must hand to the general path (which imports or names them).
TEST(Import, SaxTrlLineDefersAnythingElse) {
  const std::vector<std::string> lines = {
      R"({"prompt":"p","chosen":"a","rejected":"b","extra":1})",
      R"({"prompt":"p","chosen":"a","rejected":"b","extra":null})",
      R"({"prompt":"p","chosen":"a","rejected":"b","extra":true})",
      R"({"prompt":"p","chosen":"a","rejected":"b","extra":1.5})",
      R"({"prompt":"p","chosen":"a","rejected":"b","extra":["x"]})",
      R"({"prompt":"p","chosen":"a","rejected":"b","extra":{"k":"v"}})",
      R"({"prompt":[{"role":"user","content":"q"}],"chosen":"a","rejected":"b"})",
      R"({"prompt":"p","chosen":"a","rejected":"b","rejected":"c"})",
      R"({"prompt":"p","chosen":"a","rejected":"b","prompt":"p"})",
      R"({"prompt":"p","chosen":"a"})",
      R"({"prompt":"","chosen":"a","rejected":"b"})",
      R"({"prompt":"p","chosen":"a","rejected":"a"})",
      R"({"prompt":"p","chosen":"\u0061","rejected":"a"})",
      R"({"prompt":"p","chosen":"a","rejected":"b"} x)",
      R"({"prompt":"p","chosen":"a","rejected":"b"}{})",
      R"({"prompt":"p","chosen":"a","rejected":"b",})",
      R"({"prompt":"p\ud800","chosen":"a","rejected":"b"})",
      R"({"prompt":"p\q","chosen":"a","rejected":"b"})",
      R"(["p","a","b"])",
      R"("prompt")",
      "{\"prompt\":\"\xff\",\"chosen\":\"a\",\"rejected\":\"b\"}",
      "{\"prompt\":\"\xc0\xaf\",\"chosen\":\"a\",\"rejected\":\"b\"}",      // overlong
      "{\"prompt\":\"\xed\xa0\x80\",\"chosen\":\"a\",\"rejected\":\"b\"}",  // surrogate
      "{\"prompt\":\"\xe6\x95\",\"chosen\":\"a\",\"rejected\":\"b\"}",      // truncated
      "{\"prompt\":\"tab\tinside\",\"chosen\":\"a\",\"rejected\":\"b\"}",   // raw control
  };
  for (const std::string& line : lines) {
    internal::TrlStrings got;
    EXPECT_FALSE(internal::parse_trl_sax(line, &got)) << line;
  }
}

// Property over mutated lines: whatever the SAX reader accepts is valid UTF-8 and valid JSON
// and canonicalises as the DOM path does, so skipping the line's UTF-8 check on that path
// loses nothing.
TEST(Import, SaxTrlLineAcceptsOnlyWhatTheDomPathAccepts) {
  const std::string base =
      Json{{"prompt", "数据 q\"\\"}, {"chosen", "🙂 a"}, {"rejected", "é b"}}.dump(-1, ' ',
                                                                                     false);
  std::mt19937 rng(7);
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string line = base;
    for (int m = 0; m < 1 + i % 3; ++m) {
      line[rng() % line.size()] = static_cast<char>(rng() % 256);
    }
    internal::TrlStrings got;
    if (!internal::parse_trl_sax(line, &got)) continue;
    ++accepted;
    ASSERT_TRUE(is_valid_utf8(line)) << line;
    Json parsed = Json::parse(line);  // throws (fails the test) if it is not JSON
    EXPECT_EQ(got.chosen.digest, canonicalize(parsed["chosen"], Location{}).digest) << line;
    EXPECT_EQ(got.prompt.text, canonicalize(parsed["prompt"], Location{}).text) << line;
  }
  EXPECT_GT(accepted, 100);  // the property was exercised
}

// End to end: the same pair read by the SAX path and (with an extra non-string field) by the
// DOM path hashes the same, so the second is a duplicate.
TEST(Import, SaxAndDomPathsStoreTheSameRows) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  Json row{{"prompt", "q \"x\" \n 数据"}, {"chosen", "a\\b\u0001"}, {"rejected", "🙂"}};
  Json extra = row;
  extra["n"] = 1;
  std::string text = row.dump() + "\n" + extra.dump() + "\n" + row.dump(-1, ' ', true) + "\n";
  ImportSummary s = import_text(store, dir, text, fmt(ImportFormat::kTrl));
  EXPECT_EQ(s.imported, 1);
  EXPECT_EQ(s.duplicates, 2);
  auto pairs = store.pairs();
  ASSERT_EQ(pairs.size(), 1u);
  EXPECT_EQ(pairs[0].prompt, row["prompt"]);
  EXPECT_EQ(pairs[0].chosen, row["chosen"]);
  EXPECT_EQ(pairs[0].rejected, row["rejected"]);
}

// Each bad line, the format it is fed as, and the exact "file:line: field" it must name.
struct BadCase {
  const char* name;
  ImportFormat format;
  std::string line;
  std::string where;  // expected prefix after the path
  std::string says;   // expected part of the message
};

std::vector<BadCase> bad_cases() {
  return {
      {"not json", ImportFormat::kTrl, R"({"prompt": "x",)", ":2", "not valid JSON"},
      {"not an object", ImportFormat::kTrl, R"(["a"])", ":2", "JSON object"},
      {"invalid utf8", ImportFormat::kTrl,
       "{\"prompt\":\"\xff\xfe\",\"chosen\":\"a\",\"rejected\":\"b\"}", ":2", "UTF-8"},
      {"missing field", ImportFormat::kTrl, R"({"prompt":"p","chosen":"a"})",
       ":2: field 'rejected'", "missing"},
      {"null field", ImportFormat::kTrl, R"({"prompt":null,"chosen":"a","rejected":"b"})",
       ":2: field 'prompt'", "missing"},
      {"empty string", ImportFormat::kTrl, R"({"prompt":"","chosen":"a","rejected":"b"})",
       ":2: field 'prompt'", "empty"},
      {"wrong type", ImportFormat::kTrl, R"({"prompt":"p","chosen":7,"rejected":"b"})",
       ":2: field 'chosen'", "got number"},
      {"bad message", ImportFormat::kTrl,
       R"({"prompt":[{"role":"user"}],"chosen":"a","rejected":"b"})",
       ":2: field 'prompt[0].content'", "missing"},
      {"bad escape elsewhere", ImportFormat::kTrl,
       R"({"prompt":"p","chosen":"a","rejected":"b","x":"\q"})", ":2", "not valid JSON"},
      {"bad escape in value", ImportFormat::kTrl,
       R"({"prompt":"p\ud800","chosen":"a","rejected":"b"})", ":2", "not valid JSON"},
      {"repeated key", ImportFormat::kTrl,
       R"({"prompt":"p","chosen":"a","rejected":"b","rejected":"a"})", ":2: field 'rejected'",
       "identical"},
      {"identical", ImportFormat::kTrl, R"({"prompt":"p","chosen":"a","rejected":"a"})",
       ":2: field 'rejected'", "identical"},
      {"bad strength", ImportFormat::kAnnotations,
       R"({"prompt":"p","chosen":"a","rejected":"b","strength":"much_better"})",
       ":2: field 'strength'", "much_better"},
      {"bad round", ImportFormat::kAnnotations,
       R"({"prompt":"p","chosen":"a","rejected":"b","round":"one"})", ":2: field 'round'",
       "integer"},
      {"bad annotator", ImportFormat::kAnnotations,
       R"({"prompt":"p","chosen":"a","rejected":"b","annotator":3})", ":2: field 'annotator'",
       "string"},
      {"ranking out of range", ImportFormat::kRanking,
       R"({"prompt":"p","responses":["a","b"],"ranking":[0,2]})", ":2: field 'ranking[1]'",
       "outside"},
      {"ranking repeated", ImportFormat::kRanking,
       R"({"prompt":"p","responses":["a","b"],"ranking":[1,1]})", ":2: field 'ranking[1]'",
       "repeated"},
      {"ranking too short", ImportFormat::kRanking,
       R"({"prompt":"p","responses":["a","b"],"ranking":[1]})", ":2: field 'ranking'", "two"},
      {"ranking not ints", ImportFormat::kRanking,
       R"({"prompt":"p","responses":["a","b"],"ranking":[0,"1"]})", ":2: field 'ranking[1]'",
       "integer"},
      {"responses not list", ImportFormat::kRanking,
       R"({"prompt":"p","responses":"a","ranking":[0,1]})", ":2: field 'responses'", "list"},
      {"hh no assistant", ImportFormat::kHhRlhf,
       R"({"chosen":"\n\nHuman: hi","rejected":"\n\nHuman: hi\n\nAssistant: x"})",
       ":2: field 'chosen'", "Assistant"},
      {"hh prefix differs", ImportFormat::kHhRlhf,
       R"({"chosen":"\n\nHuman: hi\n\nAssistant: a","rejected":"\n\nHuman: ho\n\nAssistant: b"})",
       ":2: field 'rejected'", "differs"},
      {"hh empty answer", ImportFormat::kHhRlhf,
       R"({"chosen":"\n\nHuman: hi\n\nAssistant: ","rejected":"\n\nHuman: hi\n\nAssistant: b"})",
       ":2: field 'chosen'", "empty"},
      {"messages string", ImportFormat::kMessages, R"({"messages":"hello"})",
       ":2: field 'messages'", "list"},
      {"messages bad role", ImportFormat::kMessages, R"({"messages":[{"role":"","content":"x"}]})",
       ":2: field 'messages[0].role'", "non-empty"},
      {"messages unknown role", ImportFormat::kMessages,
       R"({"messages":[{"role":"usr","content":"x"}]})", ":2: field 'messages[0].role'",
       "unknown role 'usr'"},
      {"implicit prompt, nothing shared", ImportFormat::kTrl,
       R"({"chosen":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],)"
       R"("rejected":[{"role":"user","content":"Q"},{"role":"assistant","content":"b"}]})",
       ":2: field 'rejected[0]'", "share no first message"},
      {"implicit prompt, nothing after", ImportFormat::kTrl,
       R"({"chosen":[{"role":"user","content":"q"}],)"
       R"("rejected":[{"role":"user","content":"q"},{"role":"assistant","content":"b"}]})",
       ":2: field 'chosen'", "nothing follows"},
      {"implicit prompt, mixed shapes", ImportFormat::kTrl,
       R"({"chosen":[{"role":"user","content":"q"}],"rejected":"b"})", ":2: field 'prompt'",
       "both message lists or both texts"},
  };
}

TEST(Import, EveryBadLineIsNamedAndRollsTheWholeImportBack) {
  const std::string good =
      R"({"prompt":"good","chosen":"a","rejected":"b","responses":["a","b"],"ranking":[0,1],"messages":[{"role":"user","content":"m"}]})";
  const std::string good_hh =
      R"({"chosen":"\n\nHuman: q\n\nAssistant: a","rejected":"\n\nHuman: q\n\nAssistant: b"})";
  for (const BadCase& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    auto store = Store::open(dir / "s.db");
    std::string first = c.format == ImportFormat::kHhRlhf ? good_hh : good;
    std::string path = dir / "in.jsonl";
    write_file(path, first + "\n" + c.line + "\n" + first + "\n");
    try {
      import_jsonl(store, path, fmt(c.format));
      ADD_FAILURE() << "no error for " << c.name;
    } catch (const InputError& e) {
      std::string m = e.what();
      EXPECT_EQ(m.rfind(path + c.where, 0), 0u) << m;
      EXPECT_NE(m.find(c.says), std::string::npos) << m;
      EXPECT_EQ(e.where().line, 2);
    }
    EXPECT_EQ(store.count_pairs(), 0);  // the good first line was rolled back too
    EXPECT_TRUE(store.dialogues().empty());
    EXPECT_TRUE(store.prompt_ids().empty());
  }
}

TEST(Import, SkipBadImportsTheRestAndReportsEachLine) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string text = R"({"prompt":"p1","chosen":"a","rejected":"b"})"
                     "\n"
                     R"({"prompt":"p2","chosen":"a"})"
                     "\n"
                     "garbage\n"
                     R"({"prompt":"p3","chosen":"a","rejected":"a"})"
                     "\n"
                     R"({"prompt":"p4","chosen":"a","rejected":"b"})"
                     "\n";
  std::vector<int64_t> lines;
  ImportOptions opt = fmt(ImportFormat::kTrl);
  opt.skip_bad = true;
  opt.on_skipped = [&](const InputError& e) { lines.push_back(e.where().line); };
  ImportSummary s = import_text(store, dir, text, opt);
  EXPECT_EQ(s.lines, 5);
  EXPECT_EQ(s.imported, 2);
  EXPECT_EQ(s.skipped, 3);
  EXPECT_EQ(lines, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(store.prompt_ids().size(), 2u);  // skipped lines left no prompt behind
}

TEST(Import, HostileTextAndHugeStringsSurviveIntact) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  std::string sql = "Robert'); DROP TABLE preference_pairs;-- \"quoted\" \\ back\\slash \t tab";
  std::string huge(10 * 1024 * 1024, 'x');
  huge[5] = '"';
  huge[777] = '\n';
  Json rows =
      Json::array({Json{{"prompt", sql}, {"chosen", huge}, {"rejected", "\u0001ctl"}},
                   Json{{"prompt", "emoji 🙂 数据"}, {"chosen", "a"}, {"rejected", sql}}});
  std::string text = rows[0].dump() + "\n" + rows[1].dump() + "\n";
  import_text(store, dir, text, fmt(ImportFormat::kTrl));
  auto pairs = store.pairs();
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].prompt, sql);
  EXPECT_EQ(pairs[0].chosen.get<std::string>().size(), huge.size());
  EXPECT_EQ(pairs[0].chosen, huge);
  EXPECT_EQ(pairs[0].rejected, "\u0001ctl");
  EXPECT_EQ(pairs[1].prompt, "emoji 🙂 数据");
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(Import, UnknownFormatIsAUsageError) {
  EXPECT_THROW(parse_import_format("csv"), UsageError);
  EXPECT_EQ(parse_import_format("hh-rlhf"), ImportFormat::kHhRlhf);
}

}  // namespace
}  // namespace posttrain::datastore
