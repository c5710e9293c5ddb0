// Local launcher: fork/exec one child per rank with the rank environment prepared in the parent
// (the child only calls execvpe, nothing that allocates), then a polling supervision loop that
// reaps children, forwards signals, and tears the job down when one rank fails.
#include "core/distributed/launcher.h"

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "common/error.h"
#include "core/distributed/data_parallel.h"

extern char** environ;

namespace posttrain::core {
namespace {

volatile sig_atomic_t g_received_signal = 0;

void remember_signal(int sig) { g_received_signal = sig; }

// Installs remember_signal for the forwarded signals; restores the old handlers on destruction.
//
// A forked child runs with the parent's handlers until it execs, so a SIGTERM sent to a rank that
// has not exec'd yet (another rank failed at once, on a loaded machine) would only set the
// child's copy of g_received_signal and be lost: the rank would run on until the SIGKILL. So the
// parent blocks the forwarded signals around each fork (block_for_fork / unblock_after_fork), and
// the child calls reset_in_child() (async-signal-safe calls only) before exec: the caller's
// original dispositions (default, or ignored if they were ignored) and the caller's mask, at
// which point a signal that arrived in between is delivered with the default action.
class SignalForwarding {
 public:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  static constexpr size_t kCount = sizeof(kSignals) / sizeof(kSignals[0]);

  SignalForwarding() {
    g_received_signal = 0;
    struct sigaction action {};
    action.sa_handler = remember_signal;
    sigemptyset(&action.sa_mask);
    sigemptyset(&forwarded_);
    for (size_t i = 0; i < kCount; ++i) {
      sigaddset(&forwarded_, kSignals[i]);
      sigaction(kSignals[i], &action, &old_[i]);
      child_[i] = {};
      child_[i].sa_handler = old_[i].sa_handler == SIG_IGN ? SIG_IGN : SIG_DFL;
      sigemptyset(&child_[i].sa_mask);
    }
  }
  ~SignalForwarding() {
    for (size_t i = 0; i < kCount; ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  void block_for_fork() { pthread_sigmask(SIG_BLOCK, &forwarded_, &mask_before_fork_); }
  void unblock_after_fork() { pthread_sigmask(SIG_SETMASK, &mask_before_fork_, nullptr); }
  // In the child, between fork and exec: async-signal-safe calls on prepared data only.
  void reset_in_child() {
    for (size_t i = 0; i < kCount; ++i) sigaction(kSignals[i], &child_[i], nullptr);
    pthread_sigmask(SIG_SETMASK, &mask_before_fork_, nullptr);
  }

 private:
  struct sigaction old_[kCount];    // the caller's dispositions, restored on destruction
  struct sigaction child_[kCount];  // a child's before exec: SIG_IGN if ignored, else SIG_DFL
  sigset_t forwarded_;
  sigset_t mask_before_fork_;
};

// The parent's environment with `overrides` replacing same-named variables.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (overrides.count(name) == 0) env.push_back(entry);
  }
  for (const auto& [name, value] : overrides) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Exit code, or 128 + signal number when the child died of a signal (shell convention).
int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe_status(int rank, int status) {
  if (WIFSIGNALED(status)) {
    return "rank " + std::to_string(rank) + " was killed by signal " +
           std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "rank " + std::to_string(rank) + " exited with code " +
         std::to_string(status_code(status));
}

}  // namespace

LaunchResult launch_local(const LaunchOptions& options, const std::vector<std::string>& argv) {
  if (options.nproc < 1) {
    throw UsageError("launch: --nproc must be at least 1, got " + std::to_string(options.nproc));
  }
  if (argv.empty()) throw UsageError("launch: no command to run (give it after --)");
  if (options.master_port < 0 || options.master_port > 65535) {
    throw UsageError("launch: --master-port must be in [1, 65535], got " +
                     std::to_string(options.master_port));
  }
  LaunchResult result;
  result.master_port = options.master_port > 0 ? options.master_port : pick_free_port();
  const bool set_omp = options.omp_threads > 0 && std::getenv("OMP_NUM_THREADS") == nullptr;

  // Everything the children need is built before the first fork.
  std::vector<std::vector<std::string>> envs;
  for (int rank = 0; rank < options.nproc; ++rank) {
    std::map<std::string, std::string> overrides = {
        {"RANK", std::to_string(rank)},
        {"LOCAL_RANK", std::to_string(rank)},
        {"WORLD_SIZE", std::to_string(options.nproc)},
        {"LOCAL_WORLD_SIZE", std::to_string(options.nproc)},
        {"MASTER_ADDR", options.master_addr},
        {"MASTER_PORT", std::to_string(result.master_port)}};
    if (set_omp) overrides["OMP_NUM_THREADS"] = std::to_string(options.omp_threads);
    envs.push_back(child_environment(overrides));
  }
  std::vector<std::string> args = argv;
  std::vector<char*> c_argv = c_strings(args);
  std::vector<std::vector<char*>> c_envs;
  for (auto& env : envs) c_envs.push_back(c_strings(env));

  SignalForwarding forwarding;
  std::cout.flush();
  std::cerr.flush();
  std::vector<pid_t> pids(options.nproc, -1);
  result.statuses.assign(options.nproc, -1);
  const auto log = [&](const std::string& line) {
    if (!options.quiet) std::cerr << "[launch] " << line << std::endl;
  };
  const auto signal_alive = [&](int sig) {
    for (int rank = 0; rank < options.nproc; ++rank) {
      if (pids[rank] > 0 && result.statuses[rank] < 0) ::kill(pids[rank], sig);
    }
  };

  int alive = 0;
  int forwarded = 0;      // the last signal forwarded to the ranks
  bool stopping = false;  // SIGTERM sent to the survivors, SIGKILL due at `deadline`
  bool killed = false;
  std::chrono::steady_clock::time_point deadline;
  const auto stop_all = [&](int sig) {
    signal_alive(sig);
    if (!stopping) {
      stopping = true;
      deadline = std::chrono::steady_clock::now() + options.grace;
    }
  };

  for (int rank = 0; rank < options.nproc; ++rank) {
    forwarding.block_for_fork();
    const pid_t pid = ::fork();
    if (pid == 0) {
      forwarding.reset_in_child();
      ::execvpe(c_argv[0], c_argv.data(), c_envs[rank].data());
      const char* msg = "posttrain launch: could not execute the command\n";
      [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, std::strlen(msg));
      ::_exit(127);
    }
    forwarding.unblock_after_fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      stop_all(SIGTERM);
      result.failed_rank = rank;
      result.exit_code = 1;
      result.message = "could not start rank " + std::to_string(rank) + ": fork: " + why;
      break;
    }
    pids[rank] = pid;
    ++alive;
  }

  while (alive > 0) {
    if (const int sig = g_received_signal; sig != 0) {
      g_received_signal = 0;
      forwarded = sig;
      log(std::string("forwarding ") + strsignal(sig) + " to the ranks");
      stop_all(sig);
    }
    bool reaped = false;
    for (int rank = 0; rank < options.nproc; ++rank) {
      if (pids[rank] <= 0 || result.statuses[rank] >= 0) continue;
      int status = 0;
      const pid_t done = ::waitpid(pids[rank], &status, WNOHANG);
      if (done != pids[rank]) continue;
      reaped = true;
      --alive;
      result.statuses[rank] = status_code(status);
      if (result.statuses[rank] != 0 && result.failed_rank < 0) {
        result.failed_rank = rank;
        result.exit_code = result.statuses[rank];
        result.message = describe_status(rank, status);
        if (alive > 0) {
          log(result.message + "; stopping the other ranks");
          stop_all(SIGTERM);
        }
      }
    }
    if (stopping && !killed && alive > 0 && std::chrono::steady_clock::now() >= deadline) {
      log("ranks still running after the grace period; sending SIGKILL");
      signal_alive(SIGKILL);
      killed = true;
    }
    if (!reaped && alive > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (result.failed_rank < 0 && forwarded != 0) {
    // Every rank exited 0, but the job was interrupted: that is not a success.
    result.interrupted_by = forwarded;
    result.exit_code = 128 + forwarded;
    result.message = std::string("interrupted by signal ") + std::to_string(forwarded) + " (" +
                     strsignal(forwarded) + "); every rank exited 0";
  }
  return result;
}

}  // namespace posttrain::core
