// Sandbox: fork, limit, drop privileges, exec bubblewrap; read capped output; kill on timeout.
// Between fork() and execve() the child only makes async-signal-safe calls (the caller may be
// multi-threaded), so everything it needs is prepared before the fork.
#include "synthetic/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace posttrain::synthetic {

std::string verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "fail";
    case Verdict::kError:
      return "error";
    case Verdict::kTimeout:
      return "timeout";
    case Verdict::kLimit:
      return "limit";
  }
  return "error";
}

std::string RunResult::describe() const {
  std::ostringstream s;
  s << verdict_name(verdict);
  if (!limit.empty()) s << " (" << limit << ")";
  if (signal)
    s << ", signal " << signal;
  else if (exit_code >= 0)
    s << ", exit " << exit_code;
  s << ", " << static_cast<int>(wall_seconds * 1000) << " ms";
  return s.str();
}

Program python_program(const std::string& source) {
  Program p;
  p.files = {{"main.py", source}};
  p.argv = {"python", "-I", "-B", "main.py"};
  return p;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& other) noexcept : fd(other.fd) { other.fd = -1; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// An in-memory file holding `data`, positioned at 0 (close-on-exec).
int memfd_with(const std::string& data) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "posttrain-sbx", MFD_CLOEXEC));
  if (fd < 0) throw SandboxUnavailable(std::string("memfd_create: ") + std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw SandboxUnavailable(std::string("memfd write: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

void child_fail(const char* what) {
  // Only async-signal-safe calls here.
  const char prefix[] = "posttrain sandbox: ";
  (void)!::write(2, prefix, sizeof(prefix) - 1);
  (void)!::write(2, what, std::strlen(what));
  (void)!::write(2, "\n", 1);
  _exit(125);
}

void set_limit(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit r {
    soft, hard
  };
  if (setrlimit(resource, &r) != 0) child_fail("setrlimit failed");
}

// Last non-empty line of `text`.
std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of(" \r\n\t");
  if (end == std::string::npos) return "";
  size_t start = text.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return text.substr(start, end + 1 - start);
}

// A limit named by the program's final Python exception, or "".
std::string limit_from_stderr(const std::string& err) {
  std::string line = last_line(err);
  if (line.rfind("MemoryError", 0) == 0) return "memory";
  if (line.find("[Errno 11] Resource temporarily unavailable") != std::string::npos)
    return "processes";
  if (line.find("[Errno 27] File too large") != std::string::npos) return "file_size";
  if (line.find("[Errno 28] No space left on device") != std::string::npos) return "disk";
  if (line.find("[Errno 24] Too many open files") != std::string::npos) return "open_files";
  return "";
}

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// The integer value of "key" in bwrap's JSON status stream, or -1.
int json_int(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\"");
  if (at == std::string::npos) return -1;
  at = json.find(':', at);
  return at == std::string::npos ? -1 : std::atoi(json.c_str() + at + 1);
}

// Real uid of a host process, or -1 when it is gone.
int uid_of_pid(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Uid:", 0) == 0) return std::atoi(line.c_str() + 4);
  }
  return -1;
}

// Waits (up to 2 s, then SIGKILL) for an orphaned sandbox init reparented to this process.
void reap_orphan(int pid, int uid) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    if (uid_of_pid(pid) != uid) return;  // gone, or reaped by bwrap and the pid reused
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid || (w < 0 && errno == ECHILD)) return;
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      until += std::chrono::seconds(2);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Kills whatever still runs as `uid` and waits (up to 2 s) until nothing does.
void sweep_uid(int uid) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    auto pids = processes_of_uid(uid, false);
    if (pids.empty() || std::chrono::steady_clock::now() > until) return;
    for (int p : pids) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Entries of the host's / that hold binaries and libraries: (path, link target), the target
// empty when the entry is a real directory. Absent entries are skipped.
std::vector<std::pair<std::string, std::string>> host_root_links() {
  std::vector<std::pair<std::string, std::string>> links;
  for (const char* path : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st {};
    if (::lstat(path, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(path, target, sizeof(target) - 1);
      if (n <= 0) continue;
      links.emplace_back(path, std::string(target, static_cast<size_t>(n)));
    } else if (S_ISDIR(st.st_mode)) {
      links.emplace_back(path, "");
    }
  }
  return links;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> sandbox_etc_files(int uid) {
  const std::string id = std::to_string(uid);
  return {{"passwd", "sandbox:x:" + id + ":" + id + ":sandbox:/tmp:/usr/sbin/nologin\n"},
          {"group", "sandbox:x:" + id + ":\n"},
          {"hosts", "127.0.0.1 localhost\n::1 localhost\n"},
          {"hostname", std::string(kSandboxHostname) + "\n"}};
}

Sandbox::Sandbox(SandboxOptions options) : options_(std::move(options)) {
  if (!executable(options_.bwrap)) {
    throw SandboxUnavailable("bubblewrap not found at " + options_.bwrap +
                             " (apt-get install bubblewrap); refusing to run untrusted code "
                             "without a sandbox");
  }
  if (!executable(options_.python)) {
    throw SandboxUnavailable("python interpreter not found at " + options_.python);
  }
  // Inside the sandbox only /usr (and the /bin, /lib* links into it) exists: an interpreter
  // elsewhere (a venv under a home directory, /opt) would not be found there.
  {
    char* real = ::realpath(options_.python.c_str(), nullptr);
    std::string resolved = real ? real : "";
    std::free(real);
    if (resolved.rfind("/usr/", 0) != 0) {
      throw SandboxUnavailable("python interpreter " + options_.python + " resolves to '" +
                               resolved +
                               "', outside /usr: the sandbox shows only /usr of the host");
    }
  }
  root_links_ = host_root_links();
  as_root_ = ::geteuid() == 0;
  // Orphaned sandbox inits are reparented to this process so that run() can reap them.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    throw SandboxUnavailable(std::string("prctl(PR_SET_CHILD_SUBREAPER): ") + std::strerror(errno));
  }
  constexpr int kSpan = 32 * kMaxSlots;  // uids a Sandbox may lease: uid_base .. +2047
  if (as_root_ && (options_.uid_base < 1000 || options_.uid_base + kSpan > 65534)) {
    throw SandboxUnavailable("sandbox uid_base must be in [1000, " +
                             std::to_string(65534 - kSpan) + "]");
  }
  // Probe once: the full containment must work before any untrusted code is run.
  Program probe;
  probe.argv = {"python", "-I", "-c", "import os; print(os.getuid() != 0)"};
  RunResult r = run(probe, 0);
  if (r.verdict != Verdict::kPass || r.out != "True\n") {
    throw SandboxUnavailable("cannot set up the sandbox (" + r.describe() +
                             "): " + last_line(r.err) +
                             "; refusing to run untrusted code without containment");
  }
}

Sandbox::~Sandbox() {
  for (auto& [slot, lease] : leases_) ::close(lease.second);
}

int Sandbox::uid_for_slot(int slot) const {
  if (!as_root_) return static_cast<int>(::getuid());
  if (slot < 0 || slot >= kMaxSlots) {
    throw SandboxUnavailable("sandbox slot " + std::to_string(slot) + " out of range [0, " +
                             std::to_string(kMaxSlots) + ")");
  }
  std::lock_guard<std::mutex> lock(lease_mutex_);
  auto it = leases_.find(slot);
  if (it != leases_.end()) return it->second.first;
  if (::mkdir(kLeaseDir, 0700) != 0 && errno != EEXIST) {
    throw SandboxUnavailable(std::string("cannot create ") + kLeaseDir + ": " +
                             std::strerror(errno));
  }
  for (int k = 0; k < 32; ++k) {
    int uid = options_.uid_base + slot + k * kMaxSlots;
    std::string path = std::string(kLeaseDir) + "/uid-" + std::to_string(uid) + ".lock";
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      throw SandboxUnavailable("cannot open uid lease " + path + ": " + std::strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      leases_[slot] = {uid, fd};
      return uid;
    }
    ::close(fd);
  }
  throw SandboxUnavailable("every sandbox uid for slot " + std::to_string(slot) +
                           " is leased by other runs");
}

RunResult Sandbox::run(const Program& program, int slot) const {
  const SandboxLimits& lim = options_.limits;
  RunResult result;
  const int uid = uid_for_slot(slot);
  result.uid = uid;

  // Everything the child needs, prepared before fork().
  std::vector<Fd> file_fds;
  file_fds.reserve(program.files.size());
  for (const auto& f : program.files) {
    if (f.first.empty() || f.first.find('/') != std::string::npos || f.first[0] == '.') {
      throw Error("sandbox file name must be a plain name: '" + f.first + "'");
    }
    file_fds.emplace_back(memfd_with(f.second));
  }
  Fd stdin_fd(memfd_with(program.stdin_data));
  int out_pipe[2], err_pipe[2], status_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC)) {
    throw SandboxUnavailable(std::string("pipe: ") + std::strerror(errno));
  }
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]), err_r(err_pipe[0]), err_w(err_pipe[1]);
  Fd status_r(status_pipe[0]), status_w(status_pipe[1]);

  // The sandbox's own /etc: only the sandbox user and group, loopback names, its own host name.
  std::vector<Fd> etc_fds;
  std::vector<std::pair<std::string, std::string>> etc = sandbox_etc_files(uid);
  for (const auto& f : etc) etc_fds.emplace_back(memfd_with(f.second));

  std::vector<std::string> args = {options_.bwrap, "--unshare-all", "--unshare-user",
                                   "--disable-userns", "--die-with-parent", "--new-session",
                                   "--hostname", kSandboxHostname, "--ro-bind", "/usr",
                                   "/usr"};
  // Only the interpreter's tree is visible: /usr read-only, the /bin, /sbin and /lib* entries
  // of / as the host has them (links into /usr, or read-only binds), nothing else of the host.
  for (const auto& link : root_links_) {
    if (link.second.empty()) {
      args.insert(args.end(), {"--ro-bind", link.first, link.first});
    } else {
      args.insert(args.end(), {"--symlink", link.second, link.first});
    }
  }
  args.insert(args.end(), {"--dir", "/etc"});
  for (size_t i = 0; i < etc.size(); ++i) {
    args.insert(args.end(),
                {"--ro-bind-data", std::to_string(etc_fds[i].fd), "/etc/" + etc[i].first});
  }
  args.insert(args.end(), {"--proc", "/proc", "--dev", "/dev", "--perms", "0700", "--size",
                           std::to_string(lim.workdir_bytes), "--tmpfs", "/tmp"});
  for (size_t i = 0; i < program.files.size(); ++i) {
    args.insert(args.end(),
                {"--file", std::to_string(file_fds[i].fd), "/tmp/" + program.files[i].first});
  }
  // Last: the root (its /etc and links) becomes read-only; /tmp and /dev stay writable mounts.
  args.insert(args.end(), {"--remount-ro", "/"});
  args.insert(args.end(),
              {"--json-status-fd", std::to_string(status_w.fd), "--chdir", "/tmp", "--clearenv",
               "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv",
               "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--"});
  for (size_t i = 0; i < program.argv.size(); ++i) {
    args.push_back(i == 0 && program.argv[0] == "python" ? options_.python : program.argv[i]);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  std::vector<int> keep_fds = {status_w.fd};
  for (auto& f : file_fds) keep_fds.push_back(f.fd);
  for (auto& f : etc_fds) keep_fds.push_back(f.fd);
  const rlim_t cpu = static_cast<rlim_t>(lim.cpu_seconds);
  const bool drop = as_root_;

  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) throw SandboxUnavailable(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (dup2(stdin_fd.fd, 0) < 0 || dup2(out_w.fd, 1) < 0 || dup2(err_w.fd, 2) < 0) {
      child_fail("dup2 failed");
    }
    // Nothing of ours leaks into the sandbox except the files bwrap copies and its status pipe.
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) child_fail("close_range");
    for (int fd : keep_fds) {
      if (fcntl(fd, F_SETFD, 0) != 0) child_fail("fcntl");
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setpgid(0, 0);
    set_limit(RLIMIT_CPU, cpu, cpu + 1);
    set_limit(RLIMIT_AS, lim.memory_bytes, lim.memory_bytes);
    set_limit(RLIMIT_NPROC, lim.max_processes, lim.max_processes);
    set_limit(RLIMIT_FSIZE, lim.max_file_bytes, lim.max_file_bytes);
    set_limit(RLIMIT_NOFILE, lim.max_open_files, lim.max_open_files);
    set_limit(RLIMIT_CORE, 0, 0);
    if (drop) {
      if (setgroups(0, nullptr) != 0) child_fail("setgroups failed");
      if (setresgid(uid, uid, uid) != 0) child_fail("setresgid failed");
      if (setresuid(uid, uid, uid) != 0) child_fail("setresuid failed");
    }
    if (getuid() == 0 || geteuid() == 0) child_fail("still root after dropping privileges");
    execve(argv[0], argv.data(), envp);
    child_fail("execve of bwrap failed");
  }
  out_w.reset();
  err_w.reset();
  status_w.reset();

  // Read stdout, stderr and the status pipe until all close, the deadline passes or the output
  // cap is exceeded.
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(lim.wall_seconds));
  std::string status_json;
  bool timed_out = false, too_much = false;
  Fd* fds[3] = {&out_r, &err_r, &status_r};
  std::string* bufs[3] = {&result.out, &result.err, &status_json};
  char chunk[65536];
  while (out_r.fd >= 0 || err_r.fd >= 0 || status_r.fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfds[3];
    int idx[3], n = 0;
    for (int i = 0; i < 3; ++i) {
      if (fds[i]->fd >= 0) {
        pfds[n] = {fds[i]->fd, POLLIN, 0};
        idx[n++] = i;
      }
    }
    int ready = poll(pfds, n, static_cast<int>(left));
    if (ready < 0 && errno != EINTR) break;
    for (int k = 0; k < n && ready > 0; ++k) {
      if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = ::read(pfds[k].fd, chunk, sizeof(chunk));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fds[idx[k]]->reset();
        continue;
      }
      std::string& buf = *bufs[idx[k]];
      buf.append(chunk, static_cast<size_t>(got));
      if (idx[k] < 2 && static_cast<int64_t>(buf.size()) > lim.max_output_bytes) {
        buf.resize(static_cast<size_t>(lim.max_output_bytes));
        too_much = true;
      }
    }
    if (too_much) break;
  }
  // Once the pipes are closed the program may still run (it can close them); wait up to the
  // deadline for bwrap to exit, then kill it, which tears down the whole PID namespace.
  int wstatus = 0;
  struct rusage usage {};
  bool reaped = false;
  while (!too_much && !timed_out) {
    pid_t w = wait4(pid, &wstatus, WNOHANG, &usage);
    if (w == pid) {
      reaped = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!reaped) {
    // Kill the namespace's init first (bwrap reports its host pid as "child-pid"): the kernel
    // then kills every process in the PID namespace and the outer bwrap reaps it and exits.
    // Killing only the outer bwrap would leave the init to be reparented and reaped later.
    if (status_r.fd >= 0) {  // the init's pid may still sit unread in the status pipe
      pollfd pfd{status_r.fd, POLLIN, 0};
      while (poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN)) {
        ssize_t got = ::read(status_r.fd, chunk, sizeof(chunk));
        if (got <= 0) break;
        status_json.append(chunk, static_cast<size_t>(got));
      }
    }
    int init_pid = json_int(status_json, "child-pid");
    if (init_pid > 0 && uid_of_pid(init_pid) == uid) ::kill(init_pid, SIGKILL);
    auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!reaped && std::chrono::steady_clock::now() < grace) {
      pid_t w = wait4(pid, &wstatus, WNOHANG, &usage);
      if (w == pid)
        reaped = true;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!reaped) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      while (wait4(pid, &wstatus, 0, &usage) < 0 && errno == EINTR) {
      }
    }
    // The uid is this slot's alone: anything of it still alive is a leftover of this run.
    if (as_root_) sweep_uid(uid);
  }
  // bwrap's monitor exits as soon as its init reports the program's status, while the init is
  // still exiting; as a child subreaper we inherit that init and reap it here, so no zombie of
  // the sandbox uid outlives the call (a zombie still counts against RLIMIT_NPROC).
  int init_pid = json_int(status_json, "child-pid");
  if (init_pid > 0) reap_orphan(init_pid, uid);
  result.wall_seconds = seconds_since(t0);

  // bwrap's status: "child-pid" once the sandbox is set up, then "exit-code" (128+signal when
  // the program was killed by a signal).
  bool started = status_json.find("\"child-pid\"") != std::string::npos;
  int code = json_int(status_json, "exit-code");
  if (code < 0 && reaped && WIFEXITED(wstatus)) code = WEXITSTATUS(wstatus);
  double cpu_used = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
                    1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  if (code > 128 && code <= 128 + 64) {
    result.signal = code - 128;
  } else {
    result.exit_code = code;
  }

  if (timed_out) {
    result.verdict = Verdict::kTimeout;
  } else if (too_much) {
    result.verdict = Verdict::kLimit;
    result.limit = "output";
  } else if (!started) {
    result.verdict = Verdict::kError;  // the sandbox itself failed; err holds bwrap's message
  } else if (result.signal == SIGXCPU ||
             (result.signal == SIGKILL && cpu_used >= lim.cpu_seconds)) {
    result.verdict = Verdict::kLimit;
    result.limit = "cpu";
  } else if (result.signal == SIGXFSZ) {
    result.verdict = Verdict::kLimit;
    result.limit = "file_size";
  } else if (result.exit_code == 0) {
    result.verdict = Verdict::kPass;
  } else {
    result.limit = limit_from_stderr(result.err);
    result.verdict = result.limit.empty() ? Verdict::kFail : Verdict::kLimit;
  }
  return result;
}

std::vector<RunResult> Sandbox::run_all(const std::vector<Program>& programs, int workers,
                                        const std::function<void()>& done) const {
  std::vector<RunResult> results(programs.size());
  parallel_for(static_cast<int64_t>(programs.size()), workers, [&](int64_t i, int worker) {
    results[i] = run(programs[i], worker);
    if (done) done();
  });
  return results;
}

int64_t sandbox_memory_bytes(int64_t mb) {
  const int64_t physical_mb =
      static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) >> 20;
  if (mb < 64 || mb > physical_mb) {
    throw UsageError("--memory-mb must be in [64, " + std::to_string(physical_mb) +
                     "] (this machine's memory in MiB), got " + std::to_string(mb));
  }
  return mb << 20;
}

void parallel_for(int64_t n, int workers, const std::function<void(int64_t, int)>& fn) {
  if (workers < 1) workers = 1;
  if (workers > 1024) workers = 1024;
  if (n <= 0) return;
  if (workers == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  std::vector<std::thread> threads;
  for (int w = 0; w < workers && w < n; ++w) {
    threads.emplace_back([&, w] {
      for (int64_t i = next++; i < n; i = next++) {
        try {
          fn(i, w);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!first_error) first_error = std::current_exception();
          next = n;  // stop handing out work
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

std::vector<int> processes_of_uid(int uid, bool include_zombies) {
  std::vector<int> pids;
  DIR* dir = opendir("/proc");
  if (!dir) return pids;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream status(std::string("/proc/") + e->d_name + "/status");
    bool zombie = false;
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("State:", 0) == 0) zombie = line.find('Z') != std::string::npos;
      if (line.rfind("Uid:", 0) == 0) {
        if (std::atoi(line.c_str() + 4) == uid && (include_zombies || !zombie)) {
          pids.push_back(std::atoi(e->d_name));
        }
        break;
      }
    }
  }
  closedir(dir);
  return pids;
}

}  // namespace posttrain::synthetic
