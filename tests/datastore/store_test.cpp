// The typed store API other stages call: content hashing and dedup, pairs and their filters,
// synthetic provenance, selections, reference log-probs, checkpoints, evals and metrics.
#include "datastore/store.h"

#include <gtest/gtest.h>

#include "common/jsonl.h"
#include "common/sha256.h"
#include "datastore/internal.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::TempDir;

Json msgs(const std::string& role, const std::string& content) {
  return Json::array({Json{{"role", role}, {"content", content}}});
}

TEST(Content, HashIsSha256OfCanonicalJson) {
  // Expected values from Python: sha256(json.dumps(v, sort_keys=True, ensure_ascii=False,
  // separators=(",", ":")).encode()).hexdigest().
  EXPECT_EQ(canonical_json("hi"), "\"hi\"");
  EXPECT_EQ(content_hash("hi"), "b49177e05868b7af8e82a644c1ce20e521af46497adeaffe861d294d9b4bb75e");
  EXPECT_EQ(canonical_json(msgs("user", "hi")), R"([{"content":"hi","role":"user"}])");
  EXPECT_EQ(content_hash(msgs("user", "hi")),
            "4e79873118cd9be7a1f0308b9cd772950c5410c74ca3fe1ba2626cba009a9237");
  EXPECT_EQ(content_hash("naïve \"q\"\n"),
            "40b3cf4ad9e8b7f0f65ee1ca6bc5664d6049e6c60b706c24822b3dc606fc9dde");
  EXPECT_EQ(content_hash("x"), sha256_hex("\"x\""));
}

TEST(Content, FastStringDumpMatchesNlohmann) {
  // Every ASCII byte (controls, quote, backslash, DEL) and multi-byte UTF-8, against dump().
  std::string all;
  for (int c = 1; c < 128; ++c) all.push_back(static_cast<char>(c));
  all += std::string("\0 naïve 数据 🙂 \xf4\x8f\xbf\xbf", 25);
  EXPECT_EQ(canonical_json(Json(all)), Json(all).dump());
  for (int c = 0; c < 128; ++c) {
    std::string one(1, static_cast<char>(c));
    EXPECT_EQ(canonical_json(Json(one)), Json(one).dump()) << c;
  }
  EXPECT_THROW(canonical_json(Json(std::string("bad \xff"))), InputError);
  EXPECT_THROW(canonicalize(Json(std::string("\xc3")), Location{"f", 1, "prompt"}), InputError);
}

TEST(Content, ValidationNamesTheField) {
  Location where{"f.jsonl", 3, "prompt"};
  EXPECT_EQ(validate_content("a", where), Shape::kText);
  EXPECT_EQ(validate_content(msgs("user", ""), where), Shape::kMessages);
  auto message_of = [&](const Json& v) {
    try {
      validate_content(v, where);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message_of(""), "f.jsonl:3: field 'prompt': empty string");
  EXPECT_EQ(message_of(5),
            "f.jsonl:3: field 'prompt': expected a string or a list of messages, "
            "got number");
  EXPECT_EQ(message_of(Json::array()), "f.jsonl:3: field 'prompt': empty list of messages");
  EXPECT_EQ(message_of(Json::parse(R"([{"role":"user","content":"a"},{"content":"b"}])")),
            "f.jsonl:3: field 'prompt[1].role': missing");
  EXPECT_EQ(message_of(Json::parse(R"([{"role":"user","content":7}])")),
            "f.jsonl:3: field 'prompt[0].content': expected a string, got number");
  EXPECT_EQ(message_of(Json::parse(R"(["hi"])")),
            "f.jsonl:3: field 'prompt[0]': expected a message object, got string");
}

TEST(Store, PromptsAndResponsesAreDeduplicated) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  int64_t p1 = store.add_prompt("What is 2+2?", "math", {"arith"});
  EXPECT_EQ(store.add_prompt("What is 2+2?", "other"), p1);
  int64_t p2 = store.add_prompt(msgs("user", "What is 2+2?"));
  EXPECT_NE(p1, p2);  // a string and a one-message list are different content
  EXPECT_EQ(store.prompt_content(p2), msgs("user", "What is 2+2?"));
  EXPECT_EQ(store.find_prompt("What is 2+2?"), p1);
  EXPECT_FALSE(store.find_prompt("unknown").has_value());
  EXPECT_EQ(store.prompt_ids(std::string("math")), std::vector<int64_t>{p1});

  NewResponse r;
  r.prompt_id = p1;
  r.content = "4";
  r.round = 2;
  r.token_count = 1;
  r.sampling = Json{{"temperature", 0.7}};
  int64_t a = store.add_response(r);
  EXPECT_EQ(store.add_response(r), a);
  r.prompt_id = p2;
  EXPECT_NE(store.add_response(r), a);  // same text, other prompt: another response
  EXPECT_EQ(store.responses_of(p1), std::vector<int64_t>{a});
  EXPECT_EQ(store.response_content(a), "4");
  r.prompt_id = 999;
  EXPECT_THROW(store.add_response(r), InputError);

  store.add_score({a, ScorerKind::kRewardModel, "rm-r1", 1.25, Json{{"raw", 1}}, 2});
  store.add_score({a, ScorerKind::kVerifier, "math-exact", 1.0, nullptr, 2});
  auto all = store.scores_of(a);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], std::make_pair(std::string("rm-r1"), 1.25));
  EXPECT_EQ(store.scores_of(a, ScorerKind::kVerifier).size(), 1u);
  EXPECT_THROW(store.add_score({12345, ScorerKind::kVerifier, "v", 0, nullptr, 0}), InputError);
}

struct PairWorld {
  int64_t prompt, r1, r2, r3;
};

PairWorld make_world(Store& store, const std::string& prompt_text) {
  PairWorld w;
  w.prompt = store.add_prompt(prompt_text);
  NewResponse r;
  r.prompt_id = w.prompt;
  r.content = "first";
  w.r1 = store.add_response(r);
  r.content = msgs("assistant", "second");
  w.r2 = store.add_response(r);
  r.content = "third";
  w.r3 = store.add_response(r);
  return w;
}

TEST(Store, PairsAreUniqueAndConsistent) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  PairWorld w = make_world(store, "q");
  NewPair p{w.prompt, w.r1, w.r2, std::nullopt, Strength::kBetter, "src", "ann", 1};
  auto [id, fresh] = store.add_pair(p);
  EXPECT_TRUE(fresh);
  p.strength = Strength::kMarginallyBetter;
  auto again = store.add_pair(p);
  EXPECT_EQ(again, std::make_pair(id, false));
  EXPECT_EQ(store.pair(id)->strength, Strength::kBetter);  // first write kept
  EXPECT_EQ(store.count_pairs(), 1);

  NewPair same{w.prompt, w.r1, w.r1, std::nullopt, std::nullopt, "", "", 0};
  EXPECT_THROW(store.add_pair(same), InputError);
  PairWorld other = make_world(store, "another prompt");
  NewPair cross{w.prompt,     w.r1, other.r2, std::nullopt,
                std::nullopt, "",   "",       0};  // rejected answers another prompt
  EXPECT_THROW(store.add_pair(cross), InputError);
  EXPECT_EQ(store.count_pairs(), 1);

  auto got = store.pair(id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->prompt, "q");
  EXPECT_EQ(got->chosen, "first");
  EXPECT_EQ(got->rejected, msgs("assistant", "second"));
  EXPECT_TRUE(got->edited.is_null());
  EXPECT_EQ(got->annotator, "ann");
  EXPECT_EQ(got->round, 1);
}

TEST(Store, PairFiltersSelectByRoundStrengthSourceAnnotator) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  // Five prompts, one pair each, with the given (round, strength, source, annotator).
  struct Row {
    int round;
    std::optional<Strength> strength;
    std::string source, annotator;
  };
  std::vector<Row> rows = {{0, Strength::kSignificantlyBetter, "a", "x"},
                           {1, Strength::kBetter, "a", "y"},
                           {1, Strength::kSlightlyBetter, "b", "x"},
                           {2, Strength::kMarginallyBetter, "b", ""},
                           {2, std::nullopt, "a", ""}};
  std::vector<int64_t> ids;
  for (size_t i = 0; i < rows.size(); ++i) {
    PairWorld w = make_world(store, "prompt " + std::to_string(i));
    ids.push_back(store
                      .add_pair({w.prompt, w.r1, w.r2, std::nullopt, rows[i].strength,
                                 rows[i].source, rows[i].annotator, rows[i].round})
                      .first);
  }
  auto ids_of = [&](PairFilter f) {
    std::vector<int64_t> out;
    for (const auto& p : store.pairs(f)) out.push_back(p.id);
    return out;
  };
  EXPECT_EQ(ids_of({}), ids);
  PairFilter f;
  f.rounds = {1, 2};
  EXPECT_EQ(ids_of(f), (std::vector<int64_t>{ids[1], ids[2], ids[3], ids[4]}));
  f = {};
  f.min_strength = Strength::kBetter;  // Llama 3's choice: top two levels plus unlabelled
  EXPECT_EQ(ids_of(f), (std::vector<int64_t>{ids[0], ids[1], ids[4]}));
  f = {};
  f.source = "b";
  EXPECT_EQ(ids_of(f), (std::vector<int64_t>{ids[2], ids[3]}));
  f = {};
  f.annotator = "x";
  f.limit = 1;
  EXPECT_EQ(ids_of(f), (std::vector<int64_t>{ids[0]}));
  f = {};
  f.with_content = false;
  EXPECT_TRUE(store.pairs(f)[0].prompt.is_null());
  Stats st = store.stats();
  EXPECT_EQ(st.tables["preference_pairs"], 5);
  EXPECT_EQ(st.pairs_by_round[1], 2);
  EXPECT_EQ(st.pairs_by_source["a"], 3);
  EXPECT_EQ(st.pairs_by_strength["unlabelled"], 1);
  EXPECT_EQ(st.pairs_by_strength["better"], 1);
}

TEST(Store, SyntheticProvenanceAndSelections) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  SyntheticProblem prob{"math", Json{{"question", "3*4"}}, Json{{"answer", 12}}, 1, "gen"};
  int64_t pid = store.add_synthetic_problem(prob);
  EXPECT_EQ(store.add_synthetic_problem(prob), pid);
  prob.kind = "code";
  EXPECT_NE(store.add_synthetic_problem(prob), pid);
  store.add_synthetic_attempt({pid, 1, "13", "fail", "expected 12", std::nullopt});
  store.add_synthetic_attempt({pid, 0, "11", "fail", "expected 12", std::nullopt});
  store.add_synthetic_attempt({pid, 2, "12", "pass", "", std::nullopt});
  auto attempts = store.synthetic_attempts(pid);
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(attempts[0].candidate, "11");
  EXPECT_EQ(attempts[2].verdict, "pass");
  EXPECT_THROW(store.add_synthetic_attempt({9999, 0, "x", "pass", "", std::nullopt}), InputError);
  EXPECT_THROW(store.add_synthetic_attempt({pid, 0, "x", "", "", std::nullopt}), InputError);

  Json dialogue = Json::parse(R"([{"role":"user","content":"3*4?"},
                                   {"role":"assistant","content":"13"},
                                   {"role":"user","content":"expected 12"},
                                   {"role":"assistant","content":"12"}])");
  int64_t did = store.add_kept_dialogue({dialogue, pid, "gen", 1});
  EXPECT_EQ(store.add_kept_dialogue({dialogue, std::nullopt, "other", 3}), did);
  EXPECT_THROW(store.add_kept_dialogue({Json("text"), std::nullopt, "", 0}), InputError);
  ASSERT_EQ(store.dialogues({1}).size(), 1u);
  EXPECT_EQ(store.dialogues({1})[0].problem_id, pid);
  EXPECT_TRUE(store.dialogues({2}).empty());

  int64_t prompt = store.add_prompt("Say hi");
  NewResponse r;
  r.prompt_id = prompt;
  r.content = "hi";
  r.system_prompt = "Be brief.";
  int64_t rid = store.add_response(r);
  store.add_selection(1, SampleKind::kResponse, rid, "best of 4");
  store.add_selection(1, SampleKind::kDialogue, did);
  store.add_selection(1, SampleKind::kResponse, rid);  // idempotent
  store.add_selection(2, SampleKind::kDialogue, did);
  EXPECT_THROW(store.add_selection(1, SampleKind::kResponse, 4242), InputError);
  auto sel = store.selected_samples(1);
  ASSERT_EQ(sel.size(), 2u);
  EXPECT_EQ(sel[0].kind, SampleKind::kResponse);
  EXPECT_EQ(sel[0].reason, "best of 4");
  EXPECT_EQ(sel[0].messages, Json::parse(R"([{"role":"system","content":"Be brief."},
                                             {"role":"user","content":"Say hi"},
                                             {"role":"assistant","content":"hi"}])"));
  EXPECT_EQ(sel[1].kind, SampleKind::kDialogue);
  EXPECT_EQ(sel[1].messages, dialogue);
  EXPECT_EQ(store.selected_samples(2).size(), 1u);
  EXPECT_TRUE(store.selected_samples(3).empty());
}

TEST(Store, RefLogprobsAreKeyedBySettingsHash) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  PairWorld w = make_world(store, "q");
  int64_t pair =
      store.add_pair({w.prompt, w.r1, w.r2, std::nullopt, std::nullopt, "", "", 0}).first;
  store.put_ref_logprobs(pair, "ckpt/sft-r1", "tok:abc", {-10.5, -12.25, 7, 9});
  auto got = store.get_ref_logprobs(pair, "ckpt/sft-r1", "tok:abc");
  ASSERT_TRUE(got);
  EXPECT_DOUBLE_EQ(got->chosen, -10.5);
  EXPECT_DOUBLE_EQ(got->rejected, -12.25);
  EXPECT_EQ(got->chosen_tokens, 7);
  EXPECT_EQ(got->rejected_tokens, 9);
  EXPECT_FALSE(store.get_ref_logprobs(pair, "ckpt/sft-r1", "tok:other"));  // never stale
  EXPECT_FALSE(store.get_ref_logprobs(pair, "ckpt/sft-r2", "tok:abc"));
  store.put_ref_logprobs(pair, "ckpt/sft-r1", "tok:abc", {-1, -2, 1, 2});  // replaces
  EXPECT_DOUBLE_EQ(store.get_ref_logprobs(pair, "ckpt/sft-r1", "tok:abc")->chosen, -1);
  EXPECT_EQ(store.ref_logprobs_for("ckpt/sft-r1", "tok:abc").size(), 1u);
  EXPECT_THROW(store.put_ref_logprobs(777, "c", "h", {}), InputError);
}

TEST(Store, CheckpointLineageEvalsAndMetrics) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  int64_t a = store.add_checkpoint("runs/r1/dpo-a", "dpo", 1);
  int64_t b = store.add_checkpoint("runs/r1/dpo-b", "dpo", 1);
  int64_t avg = store.add_checkpoint("runs/r1/avg", "average", 1, {a, b}, {0.25, 0.75});
  EXPECT_EQ(store.add_checkpoint("runs/r1/avg", "average", 1, {a}), avg);
  auto c = store.checkpoint(avg);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->parents, (std::vector<int64_t>{a, b}));
  EXPECT_EQ(c->weights, (std::vector<double>{0.25, 0.75}));
  EXPECT_EQ(store.checkpoint_by_path("runs/r1/dpo-b")->id, b);
  EXPECT_EQ(store.checkpoints(std::string("dpo")).size(), 2u);
  EXPECT_THROW(store.add_checkpoint("bad", "average", 1, {a, 99}), InputError);
  EXPECT_FALSE(store.checkpoint_by_path("bad"));  // the failed add left nothing behind
  EXPECT_THROW(store.add_checkpoint("w", "average", 1, {a}, {1, 2}), InputError);

  store.add_eval(avg, 1, "heldout_accuracy", 0.75, Json{{"n", 40}});
  store.add_eval(std::nullopt, 1, "rm_win_rate", 0.6);
  auto evals = store.evals(std::string("heldout_accuracy"));
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0].checkpoint_id, avg);
  EXPECT_EQ(evals[0].details["n"], 40);

  int64_t run = store.ensure_run("tiny", Json{{"lr", 1e-3}});
  EXPECT_EQ(store.ensure_run("tiny"), run);
  store.add_metric(run, 2, "loss", 1.5);
  store.add_metric(run, 1, "loss", 2.5);
  store.add_metric(run, 1, "lr", 0.001);
  store.add_metric(run, 2, "loss", 1.25);  // overwrite
  auto loss = store.metrics(run, std::string("loss"));
  ASSERT_EQ(loss.size(), 2u);
  EXPECT_EQ(loss[0].step, 1);
  EXPECT_DOUBLE_EQ(loss[1].value, 1.25);
  EXPECT_EQ(store.metrics(run).size(), 3u);
  EXPECT_THROW(store.add_metric(run + 100, 1, "loss", 1), InputError);

  EXPECT_FALSE(store.stage_done(run, 1, "sft"));
  store.mark_stage_done(run, 1, "sft");
  store.mark_stage_done(run, 1, "sft");
  EXPECT_TRUE(store.stage_done(run, 1, "sft"));
  EXPECT_FALSE(store.stage_done(run, 2, "sft"));
}

TEST(Store, TransactionBatchesAndRollsBack) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  {
    auto tx = store.transaction();
    store.add_prompt("kept?");
  }  // no commit
  EXPECT_FALSE(store.find_prompt("kept?"));
  {
    auto tx = store.transaction();
    for (int i = 0; i < 100; ++i) store.add_prompt("p" + std::to_string(i));
    tx.commit();
  }
  EXPECT_EQ(store.prompt_ids().size(), 100u);
  {
    // A failing call inside the caller's transaction leaves no partial rows; the rest commits.
    auto tx = store.transaction();
    int64_t a = store.add_checkpoint("ok", "sft", 0);
    EXPECT_THROW(store.add_checkpoint("half", "average", 0, {a, a + 50}), InputError);
    EXPECT_THROW(store.add_prompt(""), InputError);
    tx.commit();
  }
  EXPECT_TRUE(store.checkpoint_by_path("ok"));
  EXPECT_FALSE(store.checkpoint_by_path("half"));
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM checkpoint_parents"), 0);
  EXPECT_EQ(store.integrity_check(), "ok");
}

}  // namespace
}  // namespace posttrain::datastore
