// The hostile-program suite: each program is contained and reported with the right verdict,
// nothing of the sandbox uid survives the call, and the host is untouched.
#include "synthetic/sandbox.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

namespace posttrain::synthetic {
namespace {

SandboxOptions fast_options() {
  SandboxOptions o;
  o.uid_base = 61100;  // away from the default range so a parallel CLI run cannot interfere
  o.limits.wall_seconds = 2.0;
  o.limits.cpu_seconds = 1;
  o.limits.memory_bytes = 256ll << 20;
  o.limits.max_processes = 12;
  o.limits.max_output_bytes = 64 << 10;
  return o;
}

const Sandbox& sandbox() {
  static Sandbox s(fast_options());
  return s;
}

// Nothing of the sandbox uid is left once run() returns.
void expect_nothing_left(int uid) {
  auto left = processes_of_uid(uid);
  std::string pids;
  for (int p : left) pids += " " + std::to_string(p);
  EXPECT_TRUE(left.empty()) << "processes of uid " << uid << " survived:" << pids;
}

RunResult run_py(const std::string& src) {
  RunResult r = sandbox().run(python_program(src), 0);
  expect_nothing_left(r.uid);
  return r;
}

TEST(Sandbox, RunsAsUnprivilegedUidAndPasses) {
  RunResult r = run_py("import os\nprint(os.getuid(), os.getpid())\n");
  ASSERT_EQ(r.verdict, Verdict::kPass) << r.describe() << r.err;
  EXPECT_NE(r.uid, 0);
  EXPECT_EQ(r.out, std::to_string(r.uid) + " 2\n");  // pid 2: its own PID namespace
  EXPECT_EQ(r.exit_code, 0);
}

TEST(Sandbox, NonZeroExitIsFail) {
  RunResult r = run_py("import sys\nprint('x', file=sys.stderr)\nsys.exit(3)\n");
  EXPECT_EQ(r.verdict, Verdict::kFail);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "x\n");
}

TEST(Sandbox, StdinIsDelivered) {
  Program p = python_program("import sys\nprint(sys.stdin.read().upper())\n");
  p.stdin_data = "hello";
  RunResult r = sandbox().run(p);
  EXPECT_EQ(r.verdict, Verdict::kPass);
  EXPECT_EQ(r.out, "HELLO\n");
}

TEST(SandboxHostile, InfiniteLoopHitsCpuLimit) {
  // A generous wall clock: on a loaded 2-core machine 1 s of CPU can take several seconds.
  SandboxOptions o = fast_options();
  o.limits.wall_seconds = 10;
  Sandbox s(o);
  RunResult r = s.run(python_program("while True:\n    pass\n"));
  EXPECT_EQ(r.verdict, Verdict::kLimit) << r.describe();
  EXPECT_EQ(r.limit, "cpu");
  expect_nothing_left(r.uid);
}

TEST(SandboxHostile, SleepPastTimeoutIsKilled) {
  auto t0 = std::chrono::steady_clock::now();
  RunResult r = run_py("import time\ntime.sleep(30)\n");
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.verdict, Verdict::kTimeout) << r.describe();
  EXPECT_LT(took, 3.0);
}

TEST(SandboxHostile, ForkBombIsContained) {
  RunResult r = run_py(
      "import os\n"
      "n = 0\n"
      "while True:\n"
      "    try:\n"
      "        os.fork()\n"
      "        n += 1\n"
      "    except OSError:\n"
      "        pass\n");
  EXPECT_TRUE(r.verdict == Verdict::kTimeout || r.verdict == Verdict::kLimit) << r.describe();
}

TEST(SandboxHostile, ForkFailureIsReportedAsProcessLimit) {
  RunResult r = run_py(
      "import os, time\nfor i in range(100):\n    if os.fork() == 0:\n"
      "        time.sleep(5)\n        os._exit(0)\n");
  EXPECT_EQ(r.verdict, Verdict::kLimit) << r.describe() << r.err;
  EXPECT_EQ(r.limit, "processes");
}

TEST(SandboxHostile, MemoryHogHitsMemoryLimit) {
  RunResult r = run_py("x = bytearray(2 * 1024 ** 3)\nprint(len(x))\n");
  EXPECT_EQ(r.verdict, Verdict::kLimit) << r.describe() << r.err;
  EXPECT_EQ(r.limit, "memory");
}

TEST(SandboxHostile, HugeOutputIsCapped) {
  RunResult r = run_py("import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n");
  EXPECT_EQ(r.verdict, Verdict::kLimit) << r.describe();
  EXPECT_EQ(r.limit, "output");
  EXPECT_EQ(r.out.size(), static_cast<size_t>(sandbox().options().limits.max_output_bytes));
}

TEST(SandboxHostile, WritesOutsideWorkdirFail) {
  // A host directory the test can write (the sandbox's /tmp is its own tmpfs).
  std::string probe =
      std::string(POSTTRAIN_FIXTURES) + "/synthetic/pwned_" + std::to_string(getpid());
  RunResult r = run_py(
      "import errno\n"
      "bad = []\n"
      "for path in ['/etc/posttrain_pwned', '/usr/posttrain_pwned', '" +
      probe +
      "',\n"
      "             '/root/posttrain_pwned']:\n"
      "    try:\n"
      "        open(path, 'w').write('x')\n"
      "        bad.append(path)\n"
      "    except OSError as e:\n"
      "        pass\n"
      "open('inside.txt', 'w').write('ok')\n"
      "print('wrote', bad)\n");
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.err;
  EXPECT_EQ(r.out, "wrote []\n");
  EXPECT_FALSE(std::filesystem::exists("/etc/posttrain_pwned"));
  EXPECT_FALSE(std::filesystem::exists("/usr/posttrain_pwned"));
  EXPECT_FALSE(std::filesystem::exists(probe));
}

TEST(SandboxHostile, WorkdirSizeIsCapped) {
  SandboxOptions o = fast_options();
  o.limits.workdir_bytes = 1 << 20;
  o.limits.max_file_bytes = 8 << 20;
  Sandbox small(o);
  RunResult r = small.run(python_program("open('big', 'wb').write(b'x' * (4 << 20))\n"));
  EXPECT_EQ(r.verdict, Verdict::kLimit) << r.describe() << r.err;
  EXPECT_EQ(r.limit, "disk");
}

TEST(SandboxHostile, FileSizeLimit) {
  SandboxOptions o = fast_options();
  o.limits.max_file_bytes = 1 << 20;
  Sandbox small(o);
  RunResult r = small.run(python_program("open('big', 'wb').write(b'x' * (4 << 20))\n"));
  EXPECT_EQ(r.verdict, Verdict::kLimit) << r.describe() << r.err;
  EXPECT_EQ(r.limit, "file_size");
}

TEST(SandboxHostile, SocketToLoopbackReachesNothing) {
  // A listener on the host's loopback: the sandbox must not reach it.
  int server = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(server, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(server, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  RunResult r = run_py(
      "import socket\n"
      "s = socket.socket()\n"
      "s.settimeout(1)\n"
      "try:\n"
      "    s.connect(('127.0.0.1', " +
      std::to_string(port) +
      "))\n"
      "    print('connected')\n"
      "except OSError as e:\n"
      "    print('refused')\n"
      "try:\n"
      "    socket.create_connection(('93.184.216.34', 80), timeout=1)\n"
      "    print('internet')\n"
      "except OSError:\n"
      "    print('no internet')\n");
  close(server);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.err;
  EXPECT_EQ(r.out, "refused\nno internet\n");
}

TEST(SandboxHostile, SetsidChildIsKilledWithTheSandbox) {
  // The parent exits at once; its child escapes into a new session and lingers.
  RunResult r = run_py(
      "import os, time\n"
      "if os.fork() == 0:\n"
      "    os.setsid()\n"
      "    if os.fork() == 0:\n"
      "        time.sleep(60)\n"
      "    os._exit(0)\n"
      "print('parent done')\n");
  // bwrap waits for the program; the namespace is torn down at the end either way.
  EXPECT_TRUE(r.verdict == Verdict::kPass || r.verdict == Verdict::kTimeout) << r.describe();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  expect_nothing_left(r.uid);
}

TEST(SandboxHostile, ClosedPipesThenSpinningIsTimedOut) {
  RunResult r = run_py("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(30)\n");
  EXPECT_EQ(r.verdict, Verdict::kTimeout) << r.describe();
}

// What the sandbox shows of the host: only the interpreter's tree. A hostile program lists and
// reads everything it can name and reports it; the host side then checks the report.
TEST(SandboxConfinement, SeesNoHostFilesProcessesOrEnvironment) {
  namespace fs = std::filesystem;
  const std::string fixtures = POSTTRAIN_FIXTURES;
  const std::string checkout = fs::canonical(fs::path(fixtures) / ".." / "..").string();
  // A secret on the host, world-readable, in the host's /tmp, and one in our environment.
  const std::string secret = "posttrain-secret-" + std::to_string(getpid());
  const std::string secret_path = "/tmp/posttrain_sandbox_secret_" + std::to_string(getpid());
  std::ofstream(secret_path) << secret;
  fs::permissions(secret_path, fs::perms::owner_read | fs::perms::group_read |
                                   fs::perms::others_read);
  ::setenv("POSTTRAIN_SANDBOX_SECRET", secret.c_str(), 1);
  const std::vector<std::string> host_files = {
      secret_path, checkout + "/README.md", fixtures + "/synthetic/reference_solutions.json",
      "/proc/1/environ", "/etc/shadow", "/etc/hostname", "/etc/passwd"};
  std::string paths = "[";
  for (const auto& f : host_files) paths += "'" + f + "', ";
  paths += "]";
  RunResult r = run_py(
      "import json, os, socket\n"
      "files = []\n"
      "for top, dirs, names in os.walk('/'):\n"
      "    if top in ('/usr', '/proc', '/dev'):\n"
      "        dirs[:] = []\n"
      "        continue\n"
      "    files += [os.path.join(top, n) for n in names]\n"
      "reads = {}\n"
      "for p in " + paths + " + ['" + checkout + "', '/work', '/home', '/root', '/farm']:\n"
      "    try:\n"
      "        reads[p] = os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read().decode()\n"
      "    except OSError as e:\n"
      "        reads[p] = type(e).__name__\n"
      "print(json.dumps({'root': sorted(os.listdir('/')), 'files': sorted(files),\n"
      "    'reads': reads, 'env': dict(os.environ), 'host': socket.gethostname(),\n"
      "    'pids': sorted(p for p in os.listdir('/proc') if p.isdigit())}))\n");
  ::unsetenv("POSTTRAIN_SANDBOX_SECRET");
  fs::remove(secret_path);
  ASSERT_EQ(r.verdict, Verdict::kPass) << r.describe() << r.err;
  EXPECT_EQ(r.out.find(secret), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("def digit_sum"), std::string::npos) << r.out;  // a reference solution
  auto report = nlohmann::json::parse(r.out);

  // The root holds /usr, the host's /bin, /sbin, /lib* entries, and the sandbox's own mounts.
  std::set<std::string> root = {"dev", "etc", "proc", "tmp", "usr"};
  for (const char* e : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    if (fs::exists(fs::symlink_status(std::string("/") + e))) root.insert(e);
  }
  EXPECT_EQ(report["root"].get<std::set<std::string>>(), root);
  // Outside /usr, /proc and /dev, the only files are the generated /etc and the program itself.
  EXPECT_EQ(report["files"].get<std::vector<std::string>>(),
            (std::vector<std::string>{"/etc/group", "/etc/hostname", "/etc/hosts", "/etc/passwd",
                                      "/tmp/main.py"}));
  const auto& reads = report["reads"];
  for (const std::string& p :
       {secret_path, checkout + "/README.md", fixtures + "/synthetic/reference_solutions.json",
        checkout, std::string("/work"), std::string("/home"), std::string("/root"),
        std::string("/farm"), std::string("/etc/shadow")}) {
    EXPECT_EQ(reads[p], "FileNotFoundError") << p << ": " << reads[p].dump();
  }
  // /proc is the sandbox's own PID namespace: its init (bwrap, started with an empty
  // environment) and the program; nothing of the host's processes.
  EXPECT_EQ(reads["/proc/1/environ"], "");
  EXPECT_EQ(report["pids"], nlohmann::json::array({"1", "2"}));
  EXPECT_EQ(reads["/etc/passwd"], "sandbox:x:" + std::to_string(r.uid) + ":" +
                                      std::to_string(r.uid) + ":sandbox:/tmp:/usr/sbin/nologin\n");
  EXPECT_EQ(reads["/etc/hostname"], "sandbox\n");
  EXPECT_EQ(report["host"], "sandbox");
  // The environment is bwrap's fixed set (Python adds LC_CTYPE when it coerces the C locale).
  std::set<std::string> env_keys;
  for (auto& [k, v] : report["env"].items()) env_keys.insert(k);
  env_keys.erase("LC_CTYPE");
  EXPECT_EQ(env_keys, (std::set<std::string>{"HOME", "LANG", "PATH", "PWD", "TMPDIR"}));
}

TEST(SandboxConfinement, InterpreterStillImportsItsStandardLibrary) {
  // Pure-Python modules, C extensions (loaded from lib-dynload with system libraries through the
  // dynamic loader), subprocesses through /bin/sh, and a temp file in the work dir.
  RunResult r = run_py(
      "import ast, collections, ctypes, decimal, fractions, hashlib, itertools, json, math\n"
      "import re, sqlite3, ssl, subprocess, tempfile, unicodedata, zlib\n"
      "with tempfile.NamedTemporaryFile('w') as f:\n"
      "    f.write('x')\n"
      "print(subprocess.run(['sh', '-c', 'echo shell'], capture_output=True, text=True).stdout,\n"
      "      end='')\n"
      "print(hashlib.sha256(b'abc').hexdigest()[:8], sqlite3.connect(':memory:')\n"
      "      .execute('select 6*7').fetchone()[0], decimal.Decimal('0.1') * 3)\n");
  ASSERT_EQ(r.verdict, Verdict::kPass) << r.describe() << r.err;
  // sha256("abc") = ba7816bf... (FIPS 180-2, appendix B.1).
  EXPECT_EQ(r.out, "shell\nba7816bf 42 0.3\n");
}

TEST(SandboxSetup, InterpreterOutsideUsrIsRefused) {
  // Nothing outside /usr is mounted in the sandbox, so such an interpreter could not run there.
  namespace fs = std::filesystem;
  fs::path link = fs::temp_directory_path() / ("posttrain_py_" + std::to_string(getpid()));
  fs::path copy = link.string() + "_copy";
  fs::copy_file("/usr/bin/python3", copy, fs::copy_options::overwrite_existing);
  SandboxOptions o = fast_options();
  o.python = copy.string();
  try {
    Sandbox s(o);
    ADD_FAILURE() << "expected SandboxUnavailable";
  } catch (const SandboxUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("outside /usr"), std::string::npos) << e.what();
  }
  fs::remove(copy);
}

TEST(SandboxParallel, WorkersUseDistinctUidsAndKeepOrder) {
  std::vector<Program> programs;
  for (int i = 0; i < 6; ++i) {
    programs.push_back(
        python_program("import os\nprint(" + std::to_string(i) + ", os.getuid())\n"));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto results = sandbox().run_all(programs, 3);
  (void)t0;
  ASSERT_EQ(results.size(), 6u);
  std::set<int> uids;
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(results[i].verdict, Verdict::kPass) << results[i].err;
    EXPECT_EQ(results[i].out, std::to_string(i) + " " + std::to_string(results[i].uid) + "\n");
    uids.insert(results[i].uid);
  }
  EXPECT_GE(uids.size(), 2u);
  for (int w = 0; w < 3; ++w) expect_nothing_left(sandbox().uid_for_slot(w));
}

TEST(SandboxParallel, ForkBombInOneWorkerDoesNotStarveAnother) {
  std::vector<Program> programs = {
      python_program("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                     "        pass\n"),
      python_program("import os, time\ntime.sleep(0.3)\npid = os.fork()\n"
                     "if pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\nprint('forked ok')\n")};
  auto results = sandbox().run_all(programs, 2);
  EXPECT_EQ(results[1].verdict, Verdict::kPass) << results[1].describe() << results[1].err;
  EXPECT_EQ(results[1].out, "forked ok\n");
}

TEST(SandboxSetup, ConcurrentSandboxesLeaseDifferentUids) {
  // Two sandboxes with the same uid_base (as two posttrain processes would have) never share a
  // uid, so one's limits and cleanup cannot touch the other's programs.
  Sandbox a(fast_options()), b(fast_options());
  EXPECT_NE(a.uid_for_slot(0), b.uid_for_slot(0));
  EXPECT_NE(a.uid_for_slot(1), b.uid_for_slot(1));
  EXPECT_EQ(a.uid_for_slot(0), a.uid_for_slot(0));
  EXPECT_THROW(a.uid_for_slot(Sandbox::kMaxSlots), SandboxUnavailable);
  RunResult r = b.run(python_program("import os\nprint(os.getuid())\n"), 1);
  EXPECT_EQ(r.out, std::to_string(b.uid_for_slot(1)) + "\n");
}

TEST(SandboxSetup, MissingBwrapRefuses) {
  SandboxOptions o = fast_options();
  o.bwrap = "/nonexistent/bwrap";
  try {
    Sandbox s(o);
    FAIL() << "expected SandboxUnavailable";
  } catch (const SandboxUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("refusing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace posttrain::synthetic
