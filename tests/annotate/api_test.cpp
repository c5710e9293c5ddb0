// The annotation API over HTTP (in-process server on 127.0.0.1, port 0): auth, leases,
// validation, the pair rule through the store, edits and skips, and 8 clients at once.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "annotate_test_util.h"
#include "datastore/export.h"

namespace posttrain::annotate {
namespace {

using testing::count;
using testing::Fixture;
using testing::Json;
using testing::Reply;

// Rows of every table the API writes, to show a refused request changed nothing.
std::vector<int64_t> snapshot(Fixture& f) {
  auto store = f.store();
  std::vector<int64_t> rows;
  for (const char* t : {"annotation_leases", "judgements", "preference_pairs", "responses",
                        "annotation_tasks", "annotators"}) {
    rows.push_back(count(store, t));
  }
  rows.push_back(store.db().query_int(
      "SELECT coalesce(sum(judged + open + wanted), 0) FROM annotation_tasks"));
  return rows;
}

TEST(AnnotateApi, WrongOrMissingTokenGets401AndChangesNothing) {
  Fixture f(2, {"alice"});
  const std::string body = Json{{"task_id", 1}, {"choice", "a"}, {"strength", "better"}}.dump();
  auto before = snapshot(f);
  httplib::Client cli("127.0.0.1", f.port);
  std::vector<httplib::Headers> bad = {
      {},
      {{"Authorization", "Bearer "}},
      {{"Authorization", "Bearer nottherighttoken"}},
      {{"Authorization", "Bearer " + f.token["alice"] + "x"}},
      {{"Authorization", "Basic " + f.token["alice"]}},
      {{"Authorization", f.token["alice"]}},
  };
  for (const auto& h : bad) {
    for (const char* path : {"/api/task", "/api/me", "/api/nothing"}) {
      auto r = cli.Get(path, h);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 401) << path;
    }
    auto r = cli.Post("/api/judgement", h, body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  }
  EXPECT_EQ(snapshot(f), before);
  // The right token works (and only then does an unknown route say 404).
  EXPECT_EQ(f.get("/api/nothing", f.token["alice"]).status, 404);
  EXPECT_EQ(f.task_id("alice"), 1);
  EXPECT_EQ(f.judge("alice", 1, "a", "better").status, 200);
}

TEST(AnnotateApi, LeasesNeverHandOneTaskToTwoAnnotators) {
  Fixture f(3, {"alice", "bob", "carol", "dave"});
  EXPECT_EQ(f.task_id("alice"), 1);
  EXPECT_EQ(f.task_id("bob"), 2);
  EXPECT_EQ(f.task_id("alice"), 1);  // asking again gives the task she holds
  EXPECT_EQ(f.task_id("carol"), 3);
  EXPECT_EQ(f.task_id("dave"), 0);  // all three are leased
  Reply r = f.task("dave");
  EXPECT_TRUE(r.body["task"].is_null());
  EXPECT_EQ(r.body["progress"]["left"], 3);
  // Bob cannot judge Alice's task: he holds no lease on it.
  EXPECT_EQ(f.judge("bob", 1, "a", "better").status, 409);
  EXPECT_EQ(f.judge("alice", 1, "b", "better").status, 200);
  EXPECT_EQ(f.task_id("dave"), 0);  // task 1 is done, 2 and 3 still leased
  EXPECT_EQ(f.judge("alice", 1, "b", "better").status, 409);  // once only
}

TEST(AnnotateApi, TwoServersOnOneStoreShareTheLeases) {
  // Leases live in the store and each request is one write transaction, so a second server
  // process (here: a second server object with its own connection) cannot hand out a held task.
  Fixture f(2, {"alice", "bob", "carol"});
  ServerOptions o;
  o.port = 0;
  o.clock = [&f] { return f.now.load(); };
  Server second(f.path, o);
  const int port2 = second.start();
  EXPECT_EQ(f.task_id("alice"), 1);
  httplib::Client cli("127.0.0.1", port2);
  httplib::Headers bob = {{"Authorization", "Bearer " + f.token["bob"]}};
  auto r = cli.Get("/api/task", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(Json::parse(r->body)["task"]["id"], 2);
  EXPECT_EQ(f.task_id("carol"), 0);
  auto j = cli.Post("/api/judgement", bob,
                    Json{{"task_id", 2}, {"choice", "a"}, {"strength", "better"}}.dump(),
                    "application/json");
  ASSERT_TRUE(j);
  EXPECT_EQ(j->status, 200);
  second.stop();
  // An annotator added while the server runs (`annotate add-user` is another process) can
  // sign in at once: the server reads the store afresh on every request.
  {
    auto store = f.store();
    f.token["dave"] = add_user(store, "dave");
  }
  EXPECT_EQ(f.get("/api/me", f.token["dave"]).status, 200);
}

TEST(AnnotateApi, AnExpiredLeaseFreesTheTask) {
  Fixture f(1, {"alice", "bob"}, 0, /*lease_seconds=*/600);
  EXPECT_EQ(f.task_id("alice"), 1);
  EXPECT_EQ(f.task_id("bob"), 0);
  f.now = f.now + 599;
  EXPECT_EQ(f.task_id("bob"), 0);  // one second left on Alice's lease
  f.now = f.now + 2;
  EXPECT_EQ(f.task_id("bob"), 1);  // expired: Bob gets it
  Reply late = f.judge("alice", 1, "a", "better");
  EXPECT_EQ(late.status, 409);
  EXPECT_NE(late.body["error"].get<std::string>().find("expired"), std::string::npos);
  EXPECT_EQ(f.judge("bob", 1, "a", "better").status, 200);
  auto store = f.store();
  EXPECT_EQ(count(store, "judgements"), 1);
}

TEST(AnnotateApi, AnExpiredLeaseStillCountsWhileNobodyTookTheTask) {
  Fixture f(1, {"alice"});
  EXPECT_EQ(f.task_id("alice"), 1);
  f.now = f.now + 3600;
  EXPECT_EQ(f.judge("alice", 1, "b", "slightly_better").status, 200);
}

TEST(AnnotateApi, ValidationRefusesBadRequestsAndStoresNothing) {
  Fixture f(1, {"alice"}, 0, 600, /*max_body=*/4096);
  const Json a_text = f.task("alice").body["task"]["responses"][0];
  auto before = snapshot(f);
  const std::string tok = f.token["alice"];
  struct Case {
    std::string body;
    int status;
    const char* says;
  };
  const std::vector<Case> cases = {
      {R"({"task_id":1,"choice":"a","strength":"huge"})", 400, "strength"},
      {R"({"task_id":1,"choice":"a","strength":3})", 400, "strength"},
      {R"({"task_id":1,"choice":"a"})", 400, "strength"},
      {R"({"task_id":1,"choice":"c","strength":"better"})", 400, "choice"},
      {R"({"task_id":1,"strength":"better"})", 400, "choice"},
      {R"({"task_id":"1","choice":"a","strength":"better"})", 400, "task_id"},
      {R"({"task_id":-4,"choice":"a","strength":"better"})", 400, "task_id"},
      {R"({"choice":"a","strength":"better"})", 400, "task_id"},
      {R"({"task_id":1,"choice":"a","strength":"better","extra":1})", 400, "extra"},
      {R"({"task_id":1,"choice":"a","strength":"better","edit":"  "})", 400, "edit"},
      {R"({"task_id":1,"choice":"a","strength":"better","edit":7})", 400, "edit"},
      // Choosing B and editing it into A, the rejected one, contradicts the ranking.
      {Json{{"task_id", 1}, {"choice", "b"}, {"strength", "better"}, {"edit", a_text}}.dump(), 400,
       "rejected"},
      {R"({"task_id":1,"skip":""})", 400, "reason"},
      {R"({"task_id":1,"skip":"x","choice":"a"})", 400, "skip"},
      {R"({"task_id":1,"choice":"a",)", 400, "JSON"},
      {R"([1,2])", 400, "object"},
      {R"({"task_id":999,"choice":"a","strength":"better"})", 404, "unknown task 999"},
      {R"({"task_id":1,"choice":"a","strength":"better","edit":")" + std::string(5000, 'x') + "\"}",
       413, "too large"},
  };
  for (const auto& c : cases) {
    Reply r = f.post(c.body, tok);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 80);
    ASSERT_TRUE(r.body.is_object()) << c.body.substr(0, 80);
    EXPECT_NE(r.body.value("error", "").find(c.says), std::string::npos)
        << c.body.substr(0, 80) << " -> " << r.body;
  }
  EXPECT_EQ(snapshot(f), before);
  // The lease survived the refusals: a valid judgement still goes through.
  EXPECT_EQ(f.judge("alice", 1, "a", "better").status, 200);
}

TEST(AnnotateApi, EditAddsTheEditedResponseAndTheRanking) {
  Fixture f(1, {"alice"});
  Reply t = f.task("alice");
  const Json chosen = t.body["task"]["responses"][1];
  Reply r = f.post(Json{{"task_id", 1},
                        {"choice", "b"},
                        {"strength", "significantly_better"},
                        {"edit", "a better answer"}}
                       .dump(),
                   f.token["alice"]);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(r.body["pair_id"].is_number());
  auto store = f.store();
  auto pair = store.pair(r.body["pair_id"].get<int64_t>());
  ASSERT_TRUE(pair);
  EXPECT_EQ(pair->chosen, chosen);
  EXPECT_EQ(pair->edited, "a better answer");
  EXPECT_EQ(pair->source, "annotation");
  EXPECT_EQ(pair->annotator, "alice");
  EXPECT_EQ(pair->round, 1);
  EXPECT_EQ(pair->strength, datastore::Strength::kSignificantlyBetter);
  // The ranking the reward stage reads: edited > chosen > rejected.
  datastore::ExportOptions opt;
  opt.expand_rankings = true;
  export_jsonl(store, f.dir / "r.jsonl", opt);
  auto lines = datastore::testing::read_lines(f.dir / "r.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Json::parse(lines[0])["chosen"], "a better answer");
  EXPECT_EQ(Json::parse(lines[0])["rejected"], chosen);
  EXPECT_EQ(Json::parse(lines[2])["strength"], "significantly_better");
}

TEST(AnnotateApi, SkipKeepsTheTaskForOthers) {
  Fixture f(2, {"alice", "bob"});
  EXPECT_EQ(f.task_id("alice"), 1);
  Reply s = f.post(R"({"task_id":1,"skip":"I cannot read this language"})", f.token["alice"]);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_TRUE(s.body["pair_id"].is_null());
  EXPECT_EQ(f.task_id("alice"), 2);  // never the skipped one again
  EXPECT_EQ(f.task_id("bob"), 1);
  EXPECT_EQ(f.task("bob").body["progress"]["left"], 2);
  auto store = f.store();
  EXPECT_EQ(store.db().query_text("SELECT skip_reason FROM judgements"),
            "I cannot read this language");
  EXPECT_EQ(count(store, "preference_pairs"), 0);
  Reply me = f.get("/api/me", f.token["alice"]);
  EXPECT_EQ(me.body["progress"]["done_today"], 1);
  EXPECT_EQ(me.body["progress"]["left"], 1);  // task 2 (task 1: skipped by her)
}

TEST(AnnotateApi, AgreementTasksGoToTwoAndDisagreementToAThird) {
  Fixture f(2, {"alice", "bob", "carol"}, /*agreement=*/1.0);
  // Both tasks want two judgements: Alice and Bob both get task 1 at once.
  EXPECT_EQ(f.task_id("alice"), 1);
  EXPECT_EQ(f.task_id("bob"), 1);
  EXPECT_EQ(f.task_id("carol"), 2);
  Reply a = f.judge("alice", 1, "a", "significantly_better");
  EXPECT_TRUE(a.body["pair_id"].is_null());  // waits for Bob
  Reply b = f.judge("bob", 1, "a", "slightly_better");
  ASSERT_TRUE(b.body["pair_id"].is_number());
  {
    auto store = f.store();
    auto p = store.pair(b.body["pair_id"].get<int64_t>());
    EXPECT_EQ(p->strength, datastore::Strength::kSlightlyBetter);  // the weaker of the two
    EXPECT_EQ(p->annotator, "alice,bob");
  }
  // Task 2: Carol and Alice disagree, so no pair until Bob's third judgement.
  EXPECT_EQ(f.task_id("alice"), 2);
  EXPECT_TRUE(f.judge("carol", 2, "a", "better").body["pair_id"].is_null());
  Reply d = f.judge("alice", 2, "b", "better");
  EXPECT_TRUE(d.body["pair_id"].is_null());
  EXPECT_EQ(d.body["needs_third"], true);
  EXPECT_EQ(f.task_id("bob"), 2);
  Reply third = f.judge("bob", 2, "b", "marginally_better");
  ASSERT_TRUE(third.body["pair_id"].is_number());
  auto store = f.store();
  auto p = store.pair(third.body["pair_id"].get<int64_t>());
  auto task = datastore::AnnotationStore(store).task(2);
  EXPECT_EQ(p->chosen_id, task->response_b);
  EXPECT_EQ(p->strength, datastore::Strength::kMarginallyBetter);
  EXPECT_EQ(p->annotator, "alice,bob");
  EXPECT_EQ(count(store, "preference_pairs"), 2);
}

TEST(AnnotateApi, EightClientsJudgingAtOnceLoseNothing) {
  const int kTasks = 120, kClients = 8;
  std::vector<std::string> users;
  for (int c = 0; c < kClients; ++c) users.push_back("u" + std::to_string(c));
  Fixture f(kTasks, users, /*agreement=*/0.25);
  std::vector<std::vector<int64_t>> accepted(kClients);
  std::vector<int> errors(kClients, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", f.port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      httplib::Headers h = {{"Authorization", "Bearer " + f.token[users[c]]}};
      for (int n = 0; n < 4 * kTasks; ++n) {
        auto t = cli.Get("/api/task", h);
        if (!t || t->status != 200) {
          ++errors[c];
          continue;
        }
        Json task = Json::parse(t->body)["task"];
        if (task.is_null()) return;
        // Odd and even clients prefer different sides, so agreement tasks sometimes disagree.
        Json body{{"task_id", task["id"]}, {"choice", c % 2 ? "a" : "b"}, {"strength", "better"}};
        if (n == 0) body = Json{{"task_id", task["id"]}, {"skip", "test skip"}};
        auto r = cli.Post("/api/judgement", h, body.dump(), "application/json");
        if (!r || r->status != 200) {
          ++errors[c];
          continue;
        }
        accepted[c].push_back(Json::parse(r->body)["judgement_id"].get<int64_t>());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int64_t> ids;
  size_t total = 0;
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(errors[c], 0) << "client " << c;
    total += accepted[c].size();
    ids.insert(accepted[c].begin(), accepted[c].end());
  }
  EXPECT_EQ(ids.size(), total);  // every accepted judgement has its own row
  auto store = f.store();
  EXPECT_EQ(count(store, "judgements"), static_cast<int64_t>(total));
  // Every task closed with one pair, and no annotator judged a task twice (UNIQUE) nor did a
  // task take more judgements than it finally wanted.
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM annotation_tasks WHERE open = 1"), 0);
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM annotation_tasks WHERE pair_id IS NULL"), 0);
  EXPECT_EQ(store.db().query_int(
                "SELECT count(*) FROM annotation_tasks t WHERE t.judged <> t.wanted OR t.judged <>"
                " (SELECT count(*) FROM judgements j WHERE j.task_id = t.id"
                "  AND j.choice IS NOT NULL)"),
            0);
  EXPECT_EQ(count(store, "preference_pairs"), kTasks);
  EXPECT_EQ(count(store, "annotation_leases"), 0);
  // The trigger-kept counts agree with the rows.
  EXPECT_EQ(store.db().query_int("SELECT open_tasks FROM annotation_queue"), 0);
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM judgements j JOIN annotation_tasks t"
                                 " ON t.id = j.task_id WHERE j.task_open <> t.open"),
            0);
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(AnnotateApi, ThePageIsSelfContained) {
  Fixture f(1, {"alice"});
  httplib::Client cli("127.0.0.1", f.port);
  auto r = cli.Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  const std::string csp = r->get_header_value("Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos);
  // Nothing loaded from elsewhere: no URL, no external script, style or image.
  EXPECT_EQ(r->body.find("http:"), std::string::npos);
  EXPECT_EQ(r->body.find("https:"), std::string::npos);
  EXPECT_EQ(r->body.find("src="), std::string::npos);
  EXPECT_EQ(r->body.find("<link"), std::string::npos);
  // Data reaches the page through textContent only.
  EXPECT_EQ(r->body.find("innerHTML"), std::string::npos);
}

}  // namespace
}  // namespace posttrain::annotate
