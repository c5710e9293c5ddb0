// `posttrain launch --nproc N [--master-port P] -- COMMAND ...`: runs COMMAND as N local ranks
// of one data-parallel job (see core/distributed/launcher.h for the supervision contract).
#include <algorithm>
#include <iostream>
#include <thread>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "core/distributed/launcher.h"

namespace posttrain::app {
namespace {

const char* kUsage =
    "usage: posttrain launch --nproc N [--master-port P] [--master-addr A] "
    "[--grace-seconds S] [--quiet] -- COMMAND [ARGS...]\n"
    "Starts COMMAND N times with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR\n"
    "and MASTER_PORT set (a free port when --master-port is not given), and OMP_NUM_THREADS =\n"
    "cores / N unless already set. Ctrl-C / SIGTERM / SIGHUP are forwarded to the ranks. When a\n"
    "rank exits non-zero the others get SIGTERM, then SIGKILL after the grace period, and launch\n"
    "exits with that rank's code, naming it. Exit code 0 only if every rank exits 0.\n"
    "example: posttrain launch --nproc 2 -- posttrain sft --config sft.json";

int run_launch(const std::vector<std::string>& args) {
  const auto dash = std::find(args.begin(), args.end(), "--");
  const std::vector<std::string> own(args.begin(), dash);
  const std::vector<std::string> command(dash == args.end() ? dash : dash + 1, args.end());

  po::options_description desc("launch options");
  desc.add_options()("nproc", po::value<int>()->required(), "number of ranks to start")(
      "master-port", po::value<int>()->default_value(0), "rendezvous port (0 = pick a free one)")(
      "master-addr", po::value<std::string>()->default_value("127.0.0.1"), "rendezvous host")(
      "grace-seconds", po::value<double>()->default_value(10.0),
      "seconds between SIGTERM and SIGKILL when stopping the ranks")("quiet", po::bool_switch(),
                                                                     "print no [launch] lines");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, own, &vm)) return 0;
  if (command.empty()) throw UsageError("launch: give the command to run after --");
  const double grace = vm["grace-seconds"].as<double>();
  if (!(grace >= 0)) throw UsageError("launch: --grace-seconds must be >= 0");

  core::LaunchOptions options;
  options.nproc = vm["nproc"].as<int>();
  options.master_port = vm["master-port"].as<int>();
  options.master_addr = vm["master-addr"].as<std::string>();
  options.grace = std::chrono::milliseconds(static_cast<int64_t>(grace * 1000));
  options.quiet = vm["quiet"].as<bool>();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.omp_threads = std::max(1, cores / std::max(1, options.nproc));

  const core::LaunchResult result = core::launch_local(options, command);
  if (result.exit_code != 0) std::cerr << "posttrain launch: " << result.message << std::endl;
  return result.exit_code;
}

}  // namespace

POSTTRAIN_COMMAND("launch", "run a command as N local data-parallel ranks", run_launch);

}  // namespace posttrain::app
