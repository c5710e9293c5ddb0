// bench_annotate: judgements per second through the annotation API with C concurrent clients
// (default 16), and the page's time to first task under that load.
//
//   build-notorch/bench_annotate [--tasks N] [--clients C] [--store PATH]
//
// A fresh store gets N prompts with two scored responses each (N tasks, one judgement each),
// C annotators, and an in-process server on 127.0.0.1 (port 0, the one the CLI runs). Each
// client loops GET /api/task, POST /api/judgement on its own keep-alive connection until the
// queue is empty. Meanwhile one more client plays a browser arriving every 100 ms: GET / (the
// page) then GET /api/task (what the page asks first), timed together. At the end the store
// must hold exactly the judgements the clients saw accepted, one pair per task, and pass
// integrity_check. Prints one JSON line, then a table.
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "annotate/server.h"
#include "annotate/stats.h"
#include "annotate/tasks.h"
#include "annotate/users.h"
#include "datastore/annotation_store.h"

namespace an = posttrain::annotate;
namespace ds = posttrain::datastore;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void fill_store(const std::string& path, int tasks, int clients, std::vector<std::string>* tokens) {
  ds::Store store = ds::Store::open(path);
  {
    auto tx = store.transaction();
    for (int i = 0; i < tasks; ++i) {
      int64_t p = store.add_prompt(
          Json("Question " + std::to_string(i) + ": what is " + std::to_string(i) + " + 1?"));
      for (int k = 0; k < 2; ++k) {
        ds::NewResponse r;
        r.prompt_id = p;
        r.content = "Answer " + std::to_string(k) + " to question " + std::to_string(i) + ": " +
                    std::to_string(i + k) + ".";
        int64_t id = store.add_response(r);
        ds::NewScore s;
        s.response_id = id;
        s.scorer = "rm";
        s.value = k;
        store.add_score(s);
      }
    }
    tx.commit();
  }
  an::TaskSelection sel;
  sel.agreement = 0;
  an::build_tasks(store, sel);
  for (int c = 0; c < clients; ++c)
    tokens->push_back(an::add_user(store, "bench" + std::to_string(c)));
  tokens->push_back(an::add_user(store, "browser"));
}

const char* const kStrengths[] = {"significantly_better", "better", "slightly_better",
                                  "marginally_better"};

}  // namespace

int main(int argc, char** argv) {
  int tasks = 10000, clients = 16;
  std::string path;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--tasks")
      tasks = std::atoi(argv[i + 1]);
    else if (a == "--clients")
      clients = std::atoi(argv[i + 1]);
    else if (a == "--store")
      path = argv[i + 1];
    else {
      std::cerr << "usage: bench_annotate [--tasks N] [--clients C] [--store PATH]\n";
      return 2;
    }
  }
  if (path.empty()) path = "/tmp/bench_annotate_" + std::to_string(getpid()) + ".db";
  std::remove(path.c_str());
  std::vector<std::string> tokens;
  fill_store(path, tasks, clients, &tokens);

  an::ServerOptions so;
  so.port = 0;
  so.threads = clients + 8;
  an::Server server(path, so);
  const int port = server.start();

  std::atomic<int64_t> accepted{0}, refused{0};
  std::atomic<bool> running{true};
  auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int c = 0; c < clients; ++c) {
    workers.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      httplib::Headers auth = {{"Authorization", "Bearer " + tokens[c]}};
      for (int n = 0;; ++n) {
        auto res = cli.Get("/api/task", auth);
        if (!res || res->status != 200) {
          ++refused;
          continue;
        }
        Json t = Json::parse(res->body)["task"];
        if (t.is_null()) break;
        Json body{
            {"task_id", t["id"]}, {"choice", n % 2 ? "a" : "b"}, {"strength", kStrengths[n % 4]}};
        auto r = cli.Post("/api/judgement", auth, body.dump(), "application/json");
        if (r && r->status == 200)
          ++accepted;
        else
          ++refused;
      }
    });
  }
  // A browser arriving every 100 ms: the page, then its first task (timed together); it then
  // skips the task so the workers still judge it.
  std::vector<double> first_task_ms;
  std::thread browser([&] {
    httplib::Headers auth = {{"Authorization", "Bearer " + tokens[clients]}};
    while (running) {
      httplib::Client cli("127.0.0.1", port);
      auto t0 = Clock::now();
      auto page = cli.Get("/");
      auto task = cli.Get("/api/task", auth);
      if (page && page->status == 200 && task && task->status == 200) {
        first_task_ms.push_back(1000 * seconds_since(t0));
        Json t = Json::parse(task->body)["task"];
        if (!t.is_null()) {
          cli.Post("/api/judgement", auth, Json{{"task_id", t["id"]}, {"skip", "bench"}}.dump(),
                   "application/json");
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  for (auto& w : workers) w.join();
  const double secs = seconds_since(start);
  running = false;
  browser.join();
  server.stop();

  ds::Store store = ds::Store::open(path);
  an::AnnotationStats st = an::annotation_stats(store);
  const std::string integrity = store.integrity_check();
  const bool none_lost = st.judgements == accepted && st.pairs == tasks && st.open_tasks == 0;
  std::sort(first_task_ms.begin(), first_task_ms.end());
  auto pct = [&](double q) {
    if (first_task_ms.empty()) return 0.0;
    return first_task_ms[std::min(first_task_ms.size() - 1,
                                  static_cast<size_t>(q * first_task_ms.size()))];
  };
  const double rate = accepted / secs;
  Json line{{"bench", "annotate"},
            {"clients", clients},
            {"tasks", tasks},
            {"judgements_per_s", rate},
            {"seconds", secs},
            {"accepted", accepted.load()},
            {"refused", refused.load()},
            {"stored_judgements", st.judgements},
            {"pairs", st.pairs},
            {"none_lost", none_lost},
            {"integrity", integrity},
            {"first_task_ms_p50", pct(0.5)},
            {"first_task_ms_p95", pct(0.95)},
            {"first_task_samples", first_task_ms.size()}};
  std::cout << line.dump() << "\n";
  std::printf("%-28s %12s\n", "measure", "value");
  std::printf("%-28s %12.0f\n", "judgements/s", rate);
  std::printf("%-28s %12lld / %lld\n", "stored / accepted", static_cast<long long>(st.judgements),
              static_cast<long long>(accepted.load()));
  std::printf("%-28s %12lld\n", "pairs", static_cast<long long>(st.pairs));
  std::printf("%-28s %12.1f\n", "first task p50 (ms)", pct(0.5));
  std::printf("%-28s %12.1f\n", "first task p95 (ms)", pct(0.95));
  std::printf("%-28s %12s\n", "integrity_check", integrity.c_str());
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  return none_lost && integrity == "ok" ? 0 : 1;
}
