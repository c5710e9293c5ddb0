// The annotation HTTP server (cpp-httplib from the system, Debian's libcpp-httplib-dev): the page
// at "/" (embedded in the binary, see page.h) and a JSON API under /api/ over the store.
//
//   GET  /api/me        -> {"annotator": NAME, "progress": {"done_today", "left"}}
//   GET  /api/task      -> the same plus "task": {"id", "prompt", "responses": [A, B],
//                          "lease_expires_at", "wanted"} or null when none is left
//   POST /api/judgement <- {"task_id", "choice": "a"|"b", "strength", "edit"?} or
//                          {"task_id", "skip": REASON}
//                       -> {"judgement_id", "pair_id", "edited_id", "needs_third"}
//
// Every /api/ call needs "Authorization: Bearer TOKEN" (401 otherwise, before anything is
// read or written). Errors are {"error": MESSAGE} with 400 (bad input), 404 (unknown task or
// route), 409 (the task's state refuses it), 413 (body over max_body_bytes). The store is one
// connection behind a mutex: SQLite has one writer anyway, and each request is one short
// transaction (see queue.h).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "annotate/queue.h"

namespace posttrain::annotate {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see port())
  int threads = 32;                 // worker threads; each holds a keep-alive connection
  size_t max_body_bytes = 1 << 20;  // larger request bodies get 413
  QueueOptions queue;
  std::function<double()> clock;  // Unix seconds; empty: the system clock (tests move it)
};

class Server {
 public:
  // Opens (and migrates) the store at `store_path`.
  Server(const std::string& store_path, const ServerOptions& options);
  ~Server();  // stops and joins
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and returns the port. IoError when the address cannot be bound.
  int bind();
  // Serves until stop() (binds first when bind() was not called).
  void serve();
  // bind() and serve() on a background thread; returns the port.
  int start();
  void stop();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace posttrain::annotate
