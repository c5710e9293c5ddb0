// Helpers for the annotate tests: a scratch store with round-1 candidates, an in-process
// server on 127.0.0.1 (port 0) with a clock the test moves, and a small JSON client.
#pragma once

#include <httplib.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "annotate/server.h"
#include "annotate/tasks.h"
#include "annotate/users.h"
#include "datastore/annotation_store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::annotate::testing {

using datastore::testing::TempDir;
using Json = nlohmann::json;

// `prompts` prompts ("prompt i"), each with `per_prompt` round-1 responses ("answer i.k").
inline void add_candidates(datastore::Store& store, int prompts, int per_prompt = 2, int round = 1,
                           const std::string& source = "") {
  auto tx = store.transaction();
  for (int i = 0; i < prompts; ++i) {
    int64_t p = store.add_prompt(Json("prompt " + std::to_string(i)), source);
    for (int k = 0; k < per_prompt; ++k) {
      datastore::NewResponse r;
      r.prompt_id = p;
      r.content = "answer " + std::to_string(i) + "." + std::to_string(k);
      r.round = round;
      store.add_response(r);
    }
  }
  tx.commit();
}

inline int64_t count(datastore::Store& store, const std::string& table) {
  return store.db().query_int("SELECT count(*) FROM " + table);
}

struct Reply {
  int status = 0;
  Json body;
};

// A server on a fresh store with `tasks` one-judgement tasks (agreement `agreement`) and the
// annotators `users` (tokens in token[name]).
class Fixture {
 public:
  Fixture(int tasks, const std::vector<std::string>& users, double agreement = 0,
          double lease_seconds = 600, size_t max_body = 4096) {
    path = dir / "s.db";
    {
      auto store = datastore::Store::open(path);
      add_candidates(store, tasks);
      TaskSelection sel;
      sel.agreement = agreement;
      sel.seed = 7;
      build_tasks(store, sel);
      for (const auto& u : users) token[u] = add_user(store, u);
    }
    ServerOptions o;
    o.port = 0;
    o.threads = 16;
    o.max_body_bytes = max_body;
    o.queue.lease_seconds = lease_seconds;
    o.clock = [this] { return now.load(); };
    server = std::make_unique<Server>(path, o);
    port = server->start();
  }
  ~Fixture() { server->stop(); }

  Reply get(const std::string& path_, const std::string& tok) {
    httplib::Client cli("127.0.0.1", port);
    auto res = tok.empty() ? cli.Get(path_) : cli.Get(path_, {{"Authorization", "Bearer " + tok}});
    return reply(res);
  }
  Reply post(const std::string& body, const std::string& tok) {
    httplib::Client cli("127.0.0.1", port);
    httplib::Headers h;
    if (!tok.empty()) h.emplace("Authorization", "Bearer " + tok);
    return reply(cli.Post("/api/judgement", h, body, "application/json"));
  }
  Reply task(const std::string& user) { return get("/api/task", token.at(user)); }
  // The id of the task `user` gets (0 when none).
  int64_t task_id(const std::string& user) {
    Reply r = task(user);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body["task"].is_null() ? 0 : r.body["task"]["id"].get<int64_t>();
  }
  Reply judge(const std::string& user, int64_t id, const char* choice, const char* strength) {
    return post(Json{{"task_id", id}, {"choice", choice}, {"strength", strength}}.dump(),
                token.at(user));
  }
  datastore::Store store() { return datastore::Store::open(path); }

  TempDir dir;
  std::string path;
  std::map<std::string, std::string> token;
  std::atomic<double> now{1.8e9};  // 2027-01-15, a fixed instant the tests move
  std::unique_ptr<Server> server;
  int port = 0;

 private:
  static Reply reply(const httplib::Result& res) {
    Reply r;
    if (!res) return r;
    r.status = res->status;
    r.body = Json::parse(res->body, nullptr, false);
    return r;
  }
};

}  // namespace posttrain::annotate::testing
