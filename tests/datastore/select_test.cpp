// select_dialogues: which stored dialogues become a round's SFT data. A store built by hand
// holds two math problems (last attempts pass and fail), a tool problem and an imported
// dialogue; each filter's expected set is read off that construction.
#include "datastore/select.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "datastore/store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::TempDir;

Json chat(const std::string& q, const std::string& a) {
  return Json::array({Json{{"role", "user"}, {"content", q}},
                      Json{{"role", "assistant"}, {"content", a}}});
}

struct Built {
  int64_t math_pass = 0, math_fail = 0, tool = 0, imported = 0;  // dialogue ids
};

Built build(Store& store) {
  Built b;
  auto problem = [&](const std::string& kind, const std::string& q,
                     const std::vector<std::string>& verdicts) {
    SyntheticProblem p;
    p.kind = kind;
    p.spec = Json{{"q", q}};
    p.source = "synth-" + kind;
    int64_t id = store.add_synthetic_problem(p);
    for (size_t i = 0; i < verdicts.size(); ++i) {
      SyntheticAttempt a;
      a.problem_id = id;
      a.attempt = static_cast<int>(i);
      a.candidate = "c" + std::to_string(i);
      a.verdict = verdicts[i];
      store.add_synthetic_attempt(a);
    }
    KeptDialogue d;
    d.messages = chat(q, "a");
    d.problem_id = id;
    d.source = p.source;
    d.round = kind == "tool" ? 1 : 0;
    return store.add_kept_dialogue(d);
  };
  b.math_pass = problem("math", "1+1", {"fail", "pass"});
  b.math_fail = problem("math", "2+2", {"pass", "fail"});  // the last attempt counts
  b.tool = problem("tool", "lookup", {"pass"});
  KeptDialogue d;
  d.messages = chat("hi", "hello");
  d.source = "imported";
  b.imported = store.add_kept_dialogue(d);
  return b;
}

std::vector<int64_t> selected_ids(Store& store, int round) {
  std::vector<int64_t> ids;
  for (const auto& s : store.selected_samples(round)) ids.push_back(s.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(SelectDialogues, FiltersBySourceKindVerdictAndRound) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  const Built b = build(store);
  auto select = [&](int round, auto&& edit) {
    DialogueSelection s;
    s.round = round;
    edit(s);
    return select_dialogues(store, s);
  };
  SelectionSummary all = select(10, [](DialogueSelection&) {});
  EXPECT_EQ(all.matched, 4);
  EXPECT_EQ(all.selected, 4);
  EXPECT_EQ(selected_ids(store, 10),
            (std::vector<int64_t>{b.math_pass, b.math_fail, b.tool, b.imported}));
  SelectionSummary again = select(10, [](DialogueSelection&) {});
  EXPECT_EQ(again.matched, 4);
  EXPECT_EQ(again.selected, 0);  // idempotent

  select(11, [](DialogueSelection& s) { s.kind = "math"; s.verdict = "pass"; });
  EXPECT_EQ(selected_ids(store, 11), (std::vector<int64_t>{b.math_pass}));
  select(12, [](DialogueSelection& s) { s.kind = "none"; });
  EXPECT_EQ(selected_ids(store, 12), (std::vector<int64_t>{b.imported}));
  select(13, [](DialogueSelection& s) { s.source = "synth-tool"; });
  EXPECT_EQ(selected_ids(store, 13), (std::vector<int64_t>{b.tool}));
  select(14, [](DialogueSelection& s) { s.from_rounds = {0}; s.verdict = "fail"; });
  EXPECT_EQ(selected_ids(store, 14), (std::vector<int64_t>{b.math_fail}));
  // The imported dialogue has no attempt, so no verdict matches it.
  EXPECT_EQ(select(15, [](DialogueSelection& s) { s.kind = "none"; s.verdict = "pass"; }).matched,
            0);
  EXPECT_TRUE(store.selected_samples(15).empty());
  EXPECT_EQ(store.selected_samples(11).at(0).reason, "store select");
  EXPECT_EQ(store.selected_samples(11).at(0).messages, chat("1+1", "a"));
}

}  // namespace
}  // namespace posttrain::datastore
