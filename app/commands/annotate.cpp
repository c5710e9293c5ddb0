// `posttrain annotate serve|add-user|stats`: the command-line face of annotate/ (the annotation
// page and its API). Parsing only.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <iostream>
#include <random>
#include <thread>

#include "annotate/server.h"
#include "annotate/stats.h"
#include "annotate/tasks.h"
#include "annotate/users.h"
#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "datastore/annotation_store.h"

namespace posttrain::app {
namespace {

namespace an = posttrain::annotate;
namespace ds = posttrain::datastore;

const char* kUsage =
    "usage: posttrain annotate serve    --store DB [--host 127.0.0.1] [--port 8080] [--round R]\n"
    "                                   [--source S] [--agreement F] [--lease-minutes M] [--seed "
    "N]\n"
    "       posttrain annotate add-user NAME --store DB\n"
    "       posttrain annotate stats    --store DB [--json]\n\n"
    "serve builds tasks from round R's candidates (default: the latest round with responses;\n"
    "--source: only prompts from S) and serves the annotation page at http://HOST:PORT/.\n"
    "add-user prints the annotator's token once; the page and every /api/ call need it.";

ds::Store open_existing(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    throw UsageError("no store at " + path + " (create one with: posttrain store init --store " +
                     path + ")");
  }
  return ds::Store::open(path);
}

int cmd_serve(const std::vector<std::string>& args) {
  po::options_description desc("annotate serve options");
  // clang-format off
  desc.add_options()
      ("store", po::value<std::string>()->required(), "SQLite store file")
      ("host", po::value<std::string>()->default_value("127.0.0.1"), "address to listen on")
      ("port", po::value<int>()->default_value(8080), "port (0: any free port, printed)")
      ("round", po::value<int>(), "round whose candidates become tasks (default: latest)")
      ("source", po::value<std::string>(), "only prompts from this source")
      ("agreement", po::value<double>()->default_value(0.1, "0.1"),
       "fraction of new tasks judged by two annotators")
      ("lease-minutes", po::value<double>()->default_value(10), "how long a task stays reserved")
      ("seed", po::value<uint64_t>(), "seed for picks, sides and agreement (default: random)")
      ("threads", po::value<int>()->default_value(32), "HTTP worker threads")
      ("max-body-kib", po::value<int>()->default_value(1024), "largest request body accepted");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("usage: posttrain annotate serve --store DB [options]", desc, args, &vm)) {
    return 0;
  }
  const std::string path = vm["store"].as<std::string>();
  an::ServerOptions so;
  so.host = vm["host"].as<std::string>();
  so.port = vm["port"].as<int>();
  if (so.port < 0 || so.port > 65535) throw UsageError("--port must be in [0, 65535]");
  so.threads = vm["threads"].as<int>();
  if (so.threads < 1 || so.threads > 1024) throw UsageError("--threads must be in [1, 1024]");
  const int kib = vm["max-body-kib"].as<int>();
  if (kib < 1) throw UsageError("--max-body-kib must be at least 1");
  so.max_body_bytes = static_cast<size_t>(kib) * 1024;
  so.queue.max_text_bytes = so.max_body_bytes;
  const double minutes = vm["lease-minutes"].as<double>();
  if (!(minutes > 0)) throw UsageError("--lease-minutes must be > 0");
  so.queue.lease_seconds = minutes * 60;

  an::TaskSelection sel;
  if (vm.count("round")) sel.round = vm["round"].as<int>();
  if (vm.count("source")) sel.source = vm["source"].as<std::string>();
  sel.agreement = vm["agreement"].as<double>();
  sel.seed = vm.count("seed") ? vm["seed"].as<uint64_t>() : std::random_device{}();
  an::BuildSummary built;
  int64_t open = 0;
  {
    ds::Store store = open_existing(path);
    built = an::build_tasks(store, sel);
    open = ds::AnnotationStore(store).count_tasks(true);
  }

  // SIGINT/SIGTERM are taken by a waiting thread that stops the server (no work in a handler).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  an::Server server(path, so);
  const int port = server.bind();
  std::cout << nlohmann::json{{"url", "http://" + so.host + ":" + std::to_string(port) + "/"},
                              {"port", port},
                              {"round", built.round},
                              {"tasks_added", built.added},
                              {"doubly_judged_added", built.doubly},
                              {"open_tasks", open},
                              {"seed", sel.seed}}
                   .dump()
            << std::endl;
  std::cerr << "annotate: serving http://" << so.host << ":" << port << "/ (" << open
            << " open tasks, " << built.added << " new from round " << built.round
            << "); Ctrl-C stops\n";
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server.stop();
  });
  server.serve();
  waiter.join();
  std::cerr << "annotate: stopped\n";
  return 0;
}

int cmd_add_user(const std::vector<std::string>& args) {
  po::options_description desc("annotate add-user options");
  desc.add_options()("name", po::value<std::string>()->required(), "annotator name")(
      "store", po::value<std::string>()->required(), "SQLite store file");
  po::variables_map vm;
  if (!parse_options("usage: posttrain annotate add-user NAME --store DB", desc, args, &vm,
                     {{"name", 1}})) {
    return 0;
  }
  ds::Store store = ds::Store::open(vm["store"].as<std::string>());
  const std::string name = vm["name"].as<std::string>();
  std::string token = an::add_user(store, name);
  std::cout << token << std::endl;
  std::cerr << "annotator '" << name << "' added; the token above is shown only now "
            << "(the store keeps its SHA-256)\n";
  return 0;
}

int cmd_stats(const std::vector<std::string>& args) {
  po::options_description desc("annotate stats options");
  desc.add_options()("store", po::value<std::string>()->required(), "SQLite store file")(
      "json", "one JSON object instead of the table");
  po::variables_map vm;
  if (!parse_options("usage: posttrain annotate stats --store DB [--json]", desc, args, &vm)) {
    return 0;
  }
  ds::Store store = open_existing(vm["store"].as<std::string>());
  an::AnnotationStats st = an::annotation_stats(store);
  if (vm.count("json")) {
    std::cout << an::to_json(st).dump() << "\n";
  } else {
    std::cout << an::to_table(st);
  }
  return 0;
}

int run_annotate(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage << "\n";
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  const std::string& sub = args[0];
  if (sub == "serve") return cmd_serve(rest);
  if (sub == "add-user") return cmd_add_user(rest);
  if (sub == "stats") return cmd_stats(rest);
  throw UsageError("unknown annotate command '" + sub + "' (serve, add-user, stats)");
}

}  // namespace
}  // namespace posttrain::app

POSTTRAIN_COMMAND("annotate", "annotation page: serve, add-user, stats",
                  posttrain::app::run_annotate);
