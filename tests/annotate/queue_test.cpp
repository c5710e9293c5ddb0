// Edits of chosen responses (string and message-list shapes) and the judgement body parser.
#include "annotate/queue.h"

#include <gtest/gtest.h>

namespace posttrain::annotate {
namespace {

TEST(AnnotateQueue, AnEditReplacesTheTextOfEitherShape) {
  EXPECT_EQ(apply_edit(Json("old"), "new"), Json("new"));
  EXPECT_EQ(editable_text(Json("old")), "old");
  // A message-list response keeps its earlier turns and the last message's other keys.
  Json chosen = Json::parse(R"([{"role":"assistant","content":"call"},
                                {"role":"tool","content":"42"},
                                {"role":"assistant","content":"It is 42.","weight":1}])");
  EXPECT_EQ(editable_text(chosen), "It is 42.");
  Json edited = apply_edit(chosen, "The answer is 42.");
  EXPECT_EQ(edited[0], chosen[0]);
  EXPECT_EQ(edited[1], chosen[1]);
  EXPECT_EQ(edited[2],
            Json::parse(R"({"role":"assistant","content":"The answer is 42.","weight":1})"));
  // A last message without text content (a tool call) offers an empty edit box.
  EXPECT_EQ(editable_text(Json::parse(R"([{"role":"assistant","tool_calls":[]}])")), "");
}

TEST(AnnotateQueue, ParsesJudgementsAndSkips) {
  QueueOptions o;
  JudgementRequest j =
      parse_judgement(R"({"task_id":3,"choice":"b","strength":"marginally_better","edit":"x"})", o);
  EXPECT_EQ(j.task_id, 3);
  EXPECT_EQ(j.choice, datastore::Choice::kB);
  EXPECT_EQ(j.strength, datastore::Strength::kMarginallyBetter);
  EXPECT_EQ(j.edit, "x");
  EXPECT_FALSE(j.skip_reason);
  JudgementRequest s = parse_judgement(R"({"task_id":4,"skip":"off-topic"})", o);
  EXPECT_EQ(s.skip_reason, "off-topic");
  EXPECT_FALSE(s.choice);
  // A null edit is no edit; an edit or reason over the limit is refused with 400.
  EXPECT_FALSE(
      parse_judgement(R"({"task_id":1,"choice":"a","strength":"better","edit":null})", o).edit);
  o.max_text_bytes = 3;
  try {
    parse_judgement(R"({"task_id":1,"skip":"four"})", o);
    FAIL() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("'skip'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace posttrain::annotate
