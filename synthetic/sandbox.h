// Sandboxed execution of untrusted programs (model-written Python).
//
// Design: the calling process forks; the child sets resource limits (CPU, address space,
// processes, file size, open files), drops to a dedicated unprivileged host uid/gid (the kernel
// ignores RLIMIT_NPROC for root, see ../shared/SANDBOX.md), and execs bubblewrap, which puts the
// program in fresh user, PID, mount, network, IPC and UTS namespaces. Of the host's files it sees
// only /usr (read-only) and the /bin, /sbin, /lib* links into it; /etc is made for the sandbox
// (sandbox_etc_files), /proc shows only the sandbox's own PID namespace, /dev is bwrap's minimal
// one, the working directory `/tmp` is a fresh size-capped tmpfs holding only the program's
// files, the rest of the root is read-only, and the environment is empty but PATH, HOME, TMPDIR
// and LANG. The network namespace has no interfaces but loopback (nothing of the host is
// reachable). The parent
// reads stdout/stderr with a byte cap and enforces the wall-clock timeout by SIGKILLing bwrap;
// bwrap's PID-namespace init dies with it (--die-with-parent) and the kernel then kills every
// process left in the namespace, including ones that called setsid. When any of this cannot be
// set up the executor refuses (SandboxUnavailable); it never runs code unconfined. Building a
// Sandbox makes the whole process a child subreaper (PR_SET_CHILD_SUBREAPER), so that bwrap's
// orphaned namespace init is reparented to us and reaped by run().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace posttrain::synthetic {

// Why the sandbox cannot run code here (no bwrap, no python, cannot drop privileges...).
class SandboxUnavailable : public Error {
 public:
  using Error::Error;
};

struct SandboxLimits {
  double wall_seconds = 2.0;             // wall-clock timeout; everything is killed after it
  int cpu_seconds = 2;                   // RLIMIT_CPU per process (SIGXCPU, then SIGKILL +1 s)
  int64_t memory_bytes = 512ll << 20;    // RLIMIT_AS per process
  int max_processes = 16;                // RLIMIT_NPROC for the sandbox uid (system-wide count)
  int64_t max_file_bytes = 8ll << 20;    // RLIMIT_FSIZE
  int max_open_files = 64;               // RLIMIT_NOFILE
  int64_t workdir_bytes = 32ll << 20;    // size of the tmpfs working directory
  int64_t max_output_bytes = 1ll << 20;  // stdout and stderr each; more is a `limit` verdict
};

struct SandboxOptions {
  std::string bwrap = "/usr/bin/bwrap";
  // Must be readable by the sandbox uid and resolve to a file under /usr (nothing else of the
  // host is mounted in the sandbox).
  std::string python = "/usr/bin/python3";
  // Host uid/gid used when the caller is root: each slot (pool worker) leases its own uid,
  // uid_base + slot, or when another Sandbox (in this or another process) holds that one,
  // uid_base + slot + 64k, so no two concurrent runs share an RLIMIT_NPROC budget and the
  // cleanup sweep of one never touches another's processes. Leases are flock()s on files in
  // kLeaseDir, held until the Sandbox is destroyed. Not root: the current uid is used.
  int uid_base = 61000;
  SandboxLimits limits;
};

enum class Verdict { kPass, kFail, kError, kTimeout, kLimit };
std::string verdict_name(Verdict v);  // "pass", "fail", "error", "timeout", "limit"

struct RunResult {
  Verdict verdict = Verdict::kError;
  int exit_code = -1;            // program's exit status when it exited
  int signal = 0;                // signal that ended it (0 when it exited)
  double wall_seconds = 0;       // measured
  std::string limit;             // for kLimit: "cpu", "memory", "processes", "file_size", "output"
  std::string out;               // stdout (capped)
  std::string err;               // stderr (capped)
  int uid = -1;                  // host uid the program ran under
  std::string describe() const;  // one line: verdict, status, time, limit
};

// A program to run: files written into the working directory, then argv run there.
struct Program {
  std::vector<std::pair<std::string, std::string>> files;  // name (no '/'), contents
  std::vector<std::string> argv;  // argv[0] "python" is replaced by SandboxOptions::python
  std::string stdin_data;
};

// A Python program from source: main.py with `python3 -I -B main.py`.
Program python_program(const std::string& source);

// The sandbox's host name (its own UTS namespace) and the whole of its /etc: (file name,
// contents) for passwd and group (the sandbox user `uid` only), hosts (loopback) and hostname.
constexpr const char* kSandboxHostname = "sandbox";
std::vector<std::pair<std::string, std::string>> sandbox_etc_files(int uid);

class Sandbox {
 public:
  static constexpr int kMaxSlots = 64;
  static constexpr const char* kLeaseDir = "/tmp/posttrain-sandbox-uids";

  // Throws SandboxUnavailable when containment cannot be set up (checked once, here).
  explicit Sandbox(SandboxOptions options = {});
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Runs one program as the uid of `slot` (0 for a single caller; the pool passes its worker
  // index). Thread-safe as long as concurrent callers use different slots.
  RunResult run(const Program& program, int slot = 0) const;

  // Runs every program on `workers` threads; results in input order. `done` (optional) is called
  // from worker threads after each program.
  std::vector<RunResult> run_all(const std::vector<Program>& programs, int workers,
                                 const std::function<void()>& done = nullptr) const;

  const SandboxOptions& options() const { return options_; }
  // The host uid `slot` (0 <= slot < kMaxSlots) runs as; leases it on first use. Throws
  // SandboxUnavailable when every candidate uid of the slot is leased by someone else.
  int uid_for_slot(int slot) const;

 private:
  SandboxOptions options_;
  bool as_root_ = false;
  // The host's /bin, /sbin, /lib* entries: (path, link target), or (path, "") for a directory.
  std::vector<std::pair<std::string, std::string>> root_links_;
  mutable std::mutex lease_mutex_;
  mutable std::map<int, std::pair<int, int>> leases_;  // slot -> (uid, lock fd)
};

// Bytes for a --memory-mb value. Throws UsageError outside [64 MiB, this machine's physical
// memory]: a larger limit is no limit, and past 2^43 MiB the byte count would overflow.
int64_t sandbox_memory_bytes(int64_t mb);

// Runs fn(i, worker) for i in [0, n) on `workers` threads (each worker has its own index, used
// as the sandbox slot). Exceptions from fn are rethrown after all threads stop.
void parallel_for(int64_t n, int workers, const std::function<void(int64_t, int)>& fn);

// Host pids whose real uid is `uid` (reads /proc), zombies included unless told otherwise (a
// zombie still counts against RLIMIT_NPROC). Used to check that nothing survives.
std::vector<int> processes_of_uid(int uid, bool include_zombies = true);

}  // namespace posttrain::synthetic
