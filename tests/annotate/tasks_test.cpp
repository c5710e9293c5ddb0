// Which candidates become annotation tasks (annotate/tasks.h).
#include "annotate/tasks.h"

#include <gtest/gtest.h>

#include <set>

#include "annotate_test_util.h"

namespace posttrain::annotate {
namespace {

using datastore::AnnotationStore;
using datastore::Store;
using testing::add_candidates;
using testing::count;
using testing::Json;
using testing::TempDir;

void respond(Store& store, int64_t prompt, const Json& text, int round) {
  datastore::NewResponse r;
  r.prompt_id = prompt;
  r.content = text;
  r.round = round;
  store.add_response(r);
}

void score(Store& store, int64_t response, double value) {
  datastore::NewScore s;
  s.response_id = response;
  s.scorer = "rm-round1";
  s.value = value;
  store.add_score(s);
}

TEST(AnnotateTasks, HighestScoredAgainstARandomOtherInRandomSides) {
  // One prompt, four responses scored .1, .9, .5 and unscored: every seed pairs the .9 one with
  // one of the other three; over seeds each of them appears and .9 sits on both sides.
  std::set<int64_t> others;
  std::set<int> best_side;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    TempDir dir;
    auto store = Store::open(dir / "s.db");
    add_candidates(store, 1, 4);
    auto ids = store.responses_of(1);
    score(store, ids[0], 0.1);
    score(store, ids[1], 0.9);
    score(store, ids[2], 0.5);
    TaskSelection sel;
    sel.seed = seed;
    BuildSummary sum = build_tasks(store, sel);
    ASSERT_EQ(sum.added, 1);
    EXPECT_EQ(sum.round, 1);
    auto t = AnnotationStore(store).task(1);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->source, "reward_model");
    const bool a_best = t->response_a == ids[1];
    ASSERT_TRUE(a_best || t->response_b == ids[1]);
    best_side.insert(a_best ? 0 : 1);
    others.insert(a_best ? t->response_b : t->response_a);
  }
  EXPECT_EQ(best_side.size(), 2u);
  EXPECT_EQ(others.size(), 3u);
}

TEST(AnnotateTasks, TwoAtRandomWithoutScores) {
  std::set<std::pair<int64_t, int64_t>> seen;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    TempDir dir;
    auto store = Store::open(dir / "s.db");
    add_candidates(store, 1, 3);
    TaskSelection sel;
    sel.seed = seed;
    build_tasks(store, sel);
    auto t = AnnotationStore(store).task(1);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->source, "random");
    EXPECT_NE(t->response_a, t->response_b);
    seen.insert(std::minmax(t->response_a, t->response_b));
  }
  EXPECT_EQ(seen.size(), 3u);  // {1,2}, {1,3}, {2,3}
}

TEST(AnnotateTasks, OnlyUnjudgedPromptsOfTheRoundAndSource) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  add_candidates(store, 2, 2, /*round=*/1, "chat");  // prompts 1, 2
  {
    // prompt 3: only one response; prompt 4: round 0; prompt 5: from another source.
    int64_t p3 = store.add_prompt(Json("lonely"), "chat");
    respond(store, p3, Json("only"), 1);
    int64_t p4 = store.add_prompt(Json("old"), "chat");
    respond(store, p4, Json("x"), 0);
    respond(store, p4, Json("y"), 0);
    int64_t p5 = store.add_prompt(Json("code"), "code");
    respond(store, p5, Json("x"), 1);
    respond(store, p5, Json("y"), 1);
  }
  // Prompt 2's two responses already have a human judgement (an imported annotated pair); a
  // third, unjudged response alone makes no task.
  respond(store, 2, Json("a third answer"), 1);
  auto r2 = store.responses_of(2);
  datastore::NewPair human;
  human.prompt_id = 2;
  human.chosen_id = r2[0];
  human.rejected_id = r2[1];
  human.source = "vendor";
  human.annotator = "someone";
  store.add_pair(human);
  TaskSelection sel;
  sel.round = 1;
  sel.source = "chat";
  BuildSummary sum = build_tasks(store, sel);
  EXPECT_EQ(sum.added, 1);
  EXPECT_EQ(AnnotationStore(store).task(1)->prompt_id, 1);
  // Building again adds nothing: prompt 1 has its task.
  EXPECT_EQ(build_tasks(store, sel).added, 0);
  sel.source.reset();
  EXPECT_EQ(build_tasks(store, sel).added, 1);  // prompt 5
  sel.round = 0;
  EXPECT_EQ(build_tasks(store, sel).added, 1);  // prompt 4
  EXPECT_EQ(count(store, "annotation_tasks"), 3);
  // A fourth answer gives prompt 2 two unjudged answers, hence a task of those two: a prompt a
  // human judged before comes back with answers no one judged.
  respond(store, 2, Json("a fourth answer"), 1);
  sel.round = 1;
  EXPECT_EQ(build_tasks(store, sel).added, 1);
  auto t = AnnotationStore(store).task(4);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->prompt_id, 2);
  EXPECT_EQ(std::set<int64_t>({t->response_a, t->response_b}),
            std::set<int64_t>({r2[2], store.responses_of(2)[3]}));
}

TEST(AnnotateTasks, AgreementSamplingTakesTheStatedFraction) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  add_candidates(store, 10);
  TaskSelection sel;
  sel.agreement = 0.3;
  BuildSummary sum = build_tasks(store, sel);
  EXPECT_EQ(sum.added, 10);
  EXPECT_EQ(sum.doubly, 3);
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM annotation_tasks WHERE wanted = 2"), 3);
  sel.agreement = 1.5;
  EXPECT_THROW(build_tasks(store, sel), UsageError);
}

TEST(AnnotateTasks, NoResponsesNoTasks) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  EXPECT_EQ(build_tasks(store, {}).added, 0);
}

}  // namespace
}  // namespace posttrain::annotate
