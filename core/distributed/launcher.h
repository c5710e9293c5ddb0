// Starts N local worker processes of one data-parallel job and watches them, as `torchrun
// --standalone` does: each child gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT in its environment, and inherits stdin/stdout/stderr.
//
// Supervision: SIGINT, SIGTERM and SIGHUP received by the launcher are forwarded to every live
// child. When any child exits non-zero (or dies of a signal), the others get SIGTERM, then
// SIGKILL after the grace period, and the launch fails naming the first failing rank. It
// succeeds only when every child exits 0 and no signal had to be forwarded. Torch-free (POSIX
// only, apart from pick_free_port()).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace posttrain::core {

struct LaunchOptions {
  int nproc = 1;                                              // number of ranks to start (>= 1)
  std::string master_addr = "127.0.0.1";                      // MASTER_ADDR handed to the children
  int master_port = 0;                                        // MASTER_PORT; 0 = pick a free one
  std::chrono::milliseconds grace{std::chrono::seconds(10)};  // SIGTERM -> SIGKILL delay
  // When > 0 and OMP_NUM_THREADS is unset, children get OMP_NUM_THREADS=omp_threads so N
  // ranks do not each start one thread per core. 0 leaves the environment alone.
  int omp_threads = 0;
  bool quiet = false;  // no "[launch] ..." lines on stderr
};

struct LaunchResult {
  // 0 when every rank exited 0 and no signal was forwarded; else the first failing rank's
  // code (128 + signal when it was killed), or 128 + the forwarded signal.
  int exit_code = 0;
  int failed_rank = -1;       // first rank that failed, -1 when none
  int interrupted_by = 0;     // the signal forwarded to the ranks when that ended a clean job
  std::string message;        // one line describing the failure (empty on success)
  std::vector<int> statuses;  // per rank: exit code, or 128 + signal when killed by a signal
  int master_port = 0;        // the port the children were given
};

// Runs `argv` (argv[0] looked up in PATH) once per rank and waits for all of them. Throws
// UsageError on bad options (nproc < 1, empty argv); a child that cannot be exec'd exits 127,
// which counts as a failure of that rank.
LaunchResult launch_local(const LaunchOptions& options, const std::vector<std::string>& argv);

}  // namespace posttrain::core
