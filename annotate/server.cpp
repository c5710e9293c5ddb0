#include "annotate/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "annotate/page.h"

namespace posttrain::annotate {
namespace {

double system_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, Json{{"error", message}});
}

// The token of "Authorization: Bearer TOKEN", or "" when the header is missing or malformed.
std::string bearer_token(const httplib::Request& req) {
  const std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (h.size() <= prefix.size() || h.compare(0, prefix.size(), prefix) != 0) return "";
  return h.substr(prefix.size());
}

// httplib::Server whose listen backlog can be widened: Debian's build listens with a backlog
// of 5, so a burst of new connections (16 clients starting at once, a browser arriving under
// load) overflows it and the dropped SYNs come back only after TCP's 1 s retransmit. Linux
// takes a second listen() on a listening socket as a new backlog.
class HttpServer : public httplib::Server {
 public:
  void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }
};

Json progress_json(const Progress& p) {
  return Json{{"done_today", p.done_today}, {"left", p.left}};
}

}  // namespace

struct Server::Impl {
  Impl(const std::string& path, const ServerOptions& o)
      : options(o), store(datastore::Store::open(path)), queue(store, o.queue) {
    if (!options.clock) options.clock = system_seconds;
  }

  // Runs `fn` for an authenticated annotator under the store mutex; maps refusals to statuses.
  using ApiFn = std::function<void(const datastore::Annotator&, double, httplib::Response&)>;
  void api(const httplib::Request& req, httplib::Response& res, const ApiFn& fn) {
    try {
      std::lock_guard<std::mutex> lock(mu);
      std::optional<datastore::Annotator> who = queue.authenticate(bearer_token(req));
      if (!who) {
        res.set_header("WWW-Authenticate", "Bearer");
        return send_error(res, 401, "missing or wrong token (Authorization: Bearer TOKEN)");
      }
      fn(*who, options.clock(), res);
    } catch (const ApiError& e) {
      send_error(res, e.status(), e.what());
    } catch (const InputError& e) {
      send_error(res, 400, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, e.what());
    }
  }

  void routes() {
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      // Only what the page itself holds may run or load; it talks to this origin alone.
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'unsafe-inline'; "
                     "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
                     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
      res.set_content(page_html(), "text/html; charset=utf-8");
    });
    http.Get("/api/me", [this](const httplib::Request& req, httplib::Response& res) {
      api(req, res, [this](const datastore::Annotator& who, double now, httplib::Response& r) {
        send_json(
            r, 200,
            Json{{"annotator", who.name}, {"progress", progress_json(queue.progress(who, now))}});
      });
    });
    http.Get("/api/task", [this](const httplib::Request& req, httplib::Response& res) {
      api(req, res, [this](const datastore::Annotator& who, double now, httplib::Response& r) {
        std::optional<TaskView> t = queue.next_task(who, now);
        Json body{{"annotator", who.name}, {"task", nullptr}};
        if (t) {
          body["task"] = Json{{"id", t->id},
                              {"prompt", t->prompt},
                              {"responses", t->responses},
                              {"lease_expires_at", t->lease_expires_at},
                              {"wanted", t->wanted}};
        }
        body["progress"] = progress_json(queue.progress(who, now));
        body["server_time"] = now;  // the page times the lease against this, not its own clock
        send_json(r, 200, body);
      });
    });
    http.Post("/api/judgement", [this](const httplib::Request& req, httplib::Response& res) {
      api(req, res, [&](const datastore::Annotator& who, double now, httplib::Response& r) {
        JudgementRequest j = parse_judgement(req.body, options.queue);
        SubmitResult s = queue.submit(who, j, now);
        auto opt = [](const std::optional<int64_t>& v) { return v ? Json(*v) : Json(); };
        send_json(r, 200,
                  Json{{"judgement_id", s.judgement_id},
                       {"pair_id", opt(s.pair_id)},
                       {"edited_id", opt(s.edited_id)},
                       {"needs_third", s.needs_third}});
      });
    });
    // Any other /api/ path: 401 without a valid token (routes are not revealed), else 404.
    auto unknown = [this](const httplib::Request& req, httplib::Response& res) {
      api(req, res, [&](const datastore::Annotator&, double, httplib::Response& r) {
        send_error(r, 404, "no such route: " + req.method + " " + req.path);
      });
    };
    http.Get("/api/.*", unknown);
    http.Post("/api/.*", unknown);
    // Unknown routes, and 413 from the payload limit, get a JSON error body too.
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const char* what = res.status == 413   ? "request body too large"
                         : res.status == 404 ? "no such route"
                                             : "request refused";
      send_error(res, res.status, std::string(what) + ": " + req.method + " " + req.path);
    });
    http.set_default_headers({{"X-Content-Type-Options", "nosniff"},
                              {"Cache-Control", "no-store"},
                              {"Referrer-Policy", "no-referrer"}});
  }

  ServerOptions options;
  datastore::Store store;
  Queue queue;
  std::mutex mu;
  HttpServer http;
  std::thread thread;
  int port = -1;
};

Server::Server(const std::string& store_path, const ServerOptions& options)
    : impl_(std::make_unique<Impl>(store_path, options)) {
  const int threads = std::max(1, options.threads);
  impl_->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl_->http.set_payload_max_length(options.max_body_bytes);
  impl_->http.set_keep_alive_max_count(10000);
  // Headers and body go out in separate writes: without this, Nagle's algorithm holds the
  // body until the client's delayed ACK (~40 ms a request).
  impl_->http.set_tcp_nodelay(true);
  impl_->routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  if (impl_->port >= 0) return impl_->port;
  const ServerOptions& o = impl_->options;
  if (o.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(o.host);
  } else if (impl_->http.bind_to_port(o.host, o.port)) {
    impl_->port = o.port;
  }
  if (impl_->port <= 0) {
    impl_->port = -1;
    throw IoError("annotate serve: cannot listen on " + o.host + ":" + std::to_string(o.port));
  }
  impl_->http.widen_backlog();
  return impl_->port;
}

void Server::serve() {
  bind();
  impl_->http.listen_after_bind();
}

int Server::start() {
  int port = bind();
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
  // stop() before the loop runs would be lost (the loop would then never end): wait for it.
  for (int i = 0; i < 5000 && !impl_->http.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!impl_->http.is_running()) throw IoError("annotate serve: the HTTP loop did not start");
  return port;
}

void Server::stop() {
  impl_->http.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::port() const { return impl_->port; }

}  // namespace posttrain::annotate
