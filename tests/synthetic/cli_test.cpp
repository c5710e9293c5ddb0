// The synth and verify commands through the built executable (POSTTRAIN_BIN): determinism by
// seed, the self-correction trail with candidates, the store, verify on near misses, refusals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <sstream>

#include "datastore/store.h"

namespace posttrain::synthetic {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("posttrain_synth_cli_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs posttrain with `args`; returns the exit status, stderr in *err.
  int run(const std::string& args, std::string* err = nullptr) const {
    std::string err_path = path("stderr.txt");
    std::string cmd = std::string(POSTTRAIN_BIN) + " " + args + " 2>" + err_path;
    int status = std::system(cmd.c_str());
    if (err) *err = read(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  static std::string read(const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  static std::vector<json> lines(const std::string& p) {
    std::vector<json> out;
    std::ifstream in(p);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) out.push_back(json::parse(line));
    }
    return out;
  }

  void write_lines(const std::string& p, const std::vector<json>& rows) const {
    std::ofstream out(p);
    for (const auto& r : rows) out << r.dump() << "\n";
  }

  fs::path dir_;
};

TEST_F(Cli, SynthMathIsDeterministicBySeed) {
  ASSERT_EQ(run("synth math --count 15 --seed 9 --out " + path("a.jsonl")), 0);
  ASSERT_EQ(run("synth math --count 15 --seed 9 --output " + path("b.jsonl")), 0);
  ASSERT_EQ(run("synth math --count 15 --seed 10 --output " + path("c.jsonl")), 0);
  EXPECT_EQ(read(path("a.jsonl")), read(path("b.jsonl")));
  EXPECT_NE(read(path("a.jsonl")), read(path("c.jsonl")));
  auto rows = lines(path("a.jsonl"));
  ASSERT_EQ(rows.size(), 15u);
  EXPECT_EQ(rows[0]["id"], "math-9-0");
  EXPECT_TRUE(rows[0].contains("answer"));
  ASSERT_EQ(run("synth code --count 4 --seed 9 --difficulty hard --out " + path("d.jsonl")), 0);
  ASSERT_EQ(run("synth code --count 4 --seed 9 --difficulty hard --out " + path("e.jsonl")), 0);
  EXPECT_EQ(read(path("d.jsonl")), read(path("e.jsonl")));
  for (const auto& r : lines(path("d.jsonl"))) EXPECT_EQ(r["difficulty"], "hard");
}

TEST_F(Cli, SynthMathWithCandidatesKeepsCorrectedDialoguesAndStores) {
  ASSERT_EQ(run("synth math --count 4 --seed 3 --out " + path("p.jsonl")), 0);
  auto problems = lines(path("p.jsonl"));
  ASSERT_EQ(problems.size(), 4u);
  auto ref = [&](int i) { return problems[i]["reference_solution"].get<std::string>(); };
  // 0: right at once; 1: wrong, then right; 2: wrong twice (max 2 attempts); 3: no candidates.
  write_lines(
      path("cand.jsonl"),
      {{{"id", problems[0]["id"]}, {"attempts", {ref(0)}}},
       {{"id", problems[1]["id"]}, {"attempts", {"Answer: -999999", ref(1)}}},
       {{"id", problems[2]["id"]}, {"attempts", {"Answer: -999999", "Answer: -999998", ref(2)}}}});
  std::string err;
  ASSERT_EQ(run("synth math --count 4 --seed 3 --max-attempts 2 --candidates " +
                    path("cand.jsonl") + " --out " + path("d.jsonl") + " --store " + path("s.db"),
                &err),
            0)
      << err;
  auto rows = lines(path("d.jsonl"));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_TRUE(rows[0]["kept"].get<bool>());
  EXPECT_EQ(rows[0]["attempts"].size(), 1u);
  EXPECT_TRUE(rows[1]["kept"].get<bool>());
  ASSERT_EQ(rows[1]["attempts"].size(), 2u);
  EXPECT_EQ(rows[1]["attempts"][0]["verdict"], "fail");
  EXPECT_NE(rows[1]["attempts"][0]["feedback"].get<std::string>().find("-999999 is incorrect"),
            std::string::npos);
  const json& msgs = rows[1]["messages"];
  ASSERT_EQ(msgs.size(), 4u);  // user, assistant (weight 0), user feedback, assistant (weight 1)
  EXPECT_EQ(msgs[1]["weight"], 0);
  EXPECT_EQ(msgs[2]["role"], "user");
  EXPECT_EQ(msgs[3]["weight"], 1);
  EXPECT_EQ(msgs[3]["content"], ref(1));
  EXPECT_FALSE(rows[2]["kept"].get<bool>());
  EXPECT_EQ(rows[2]["attempts"].size(), 2u);
  EXPECT_FALSE(rows[2].contains("messages"));
  EXPECT_FALSE(rows[3].contains("attempts"));
  auto summary = json::parse(err.substr(0, err.find('\n')));
  EXPECT_EQ(summary["problems_with_candidates"], 3);
  EXPECT_EQ(summary["correct_first_try"], 1);
  EXPECT_EQ(summary["fixed_by_feedback"], 1);
  EXPECT_NEAR(summary["share_correct_first_try"].get<double>(), 1.0 / 3, 1e-9);

  auto store = datastore::Store::open(path("s.db"));
  auto dialogues = store.dialogues({}, std::string("synth-math"));
  ASSERT_EQ(dialogues.size(), 2u);
  // Kept dialogues are selected as SFT data of their round (0 here), in order.
  auto selected = store.selected_samples(0);
  ASSERT_EQ(selected.size(), 2u);
  EXPECT_EQ(selected[0].id, dialogues[0].id);
  EXPECT_EQ(selected[1].messages, dialogues[1].messages);
  EXPECT_EQ(selected[1].reason, "synth math: passed");
  ASSERT_TRUE(dialogues[1].problem_id.has_value());
  auto attempts = store.synthetic_attempts(*dialogues[1].problem_id);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].attempt, 0);
  EXPECT_EQ(attempts[0].verdict, "fail");
  EXPECT_EQ(attempts[0].candidate, "Answer: -999999");
  EXPECT_NE(attempts[0].feedback.find("incorrect"), std::string::npos);
  EXPECT_EQ(attempts[1].verdict, "pass");
  EXPECT_EQ(dialogues[1].messages[1]["weight"], 0);

  // Re-running the same command adds nothing: problems, attempts and dialogues are deduplicated.
  ASSERT_EQ(run("synth math --count 4 --seed 3 --max-attempts 2 --candidates " +
                    path("cand.jsonl") + " --store " + path("s.db"), &err), 0) << err;
  auto again = datastore::Store::open(path("s.db"));
  EXPECT_EQ(again.dialogues({}, std::string("synth-math")).size(), 2u);
  EXPECT_EQ(again.synthetic_attempts(*dialogues[1].problem_id).size(), 2u);
}

TEST_F(Cli, SynthCodeWithCandidatesRunsTheTestsInTheSandbox) {
  ASSERT_EQ(run("synth code --count 2 --seed 4 --difficulty easy --out " + path("p.jsonl")), 0);
  auto problems = lines(path("p.jsonl"));
  std::ifstream in(std::string(POSTTRAIN_FIXTURES) + "/synthetic/reference_solutions.json");
  json solutions = json::parse(in);
  std::vector<json> cands;
  for (const auto& p : problems) {
    std::string code = solutions[p["family"].get<std::string>()];
    for (const auto& [k, v] : p["params"].items()) {
      std::string slot = "{" + k + "}";
      for (size_t at; (at = code.find(slot)) != std::string::npos;)
        code.replace(at, slot.size(), v.dump());
    }
    std::string broken =
        "```python\n" + p["signature"].get<std::string>() + "\n    return None\n```";
    cands.push_back({{"id", p["id"]}, {"attempts", {broken, "```python\n" + code + "```"}}});
  }
  write_lines(path("cand.jsonl"), cands);
  std::string err;
  ASSERT_EQ(run("synth code --count 2 --seed 4 --difficulty easy --candidates " +
                    path("cand.jsonl") + " --out " + path("d.jsonl"),
                &err),
            0)
      << err;
  for (const auto& row : lines(path("d.jsonl"))) {
    EXPECT_TRUE(row["kept"].get<bool>()) << row.dump();
    EXPECT_EQ(row["attempts"][0]["verdict"], "fail");
    EXPECT_NE(row["attempts"][0]["feedback"].get<std::string>().find("got None"),
              std::string::npos);
    EXPECT_EQ(row["attempts"][1]["verdict"], "pass");
  }
}

TEST_F(Cli, SynthToolWithCandidatesExecutesCallsIntoTheDialogue) {
  ASSERT_EQ(run("synth tool --count 8 --seed 5 --out " + path("p.jsonl")), 0);
  auto problems = lines(path("p.jsonl"));
  std::vector<json> cands;
  std::set<std::string> families;
  for (const auto& p : problems) {
    std::string family = p["family"], answer = p["answer"], prompt = p["prompt"];
    families.insert(family);
    std::string call;
    if (family == "calc") {
      std::string head = "What is the exact value of ";
      call = "calculator.call(expression=\"" +
             prompt.substr(head.size(), prompt.find('?') - head.size()) + "\")";
    } else if (family == "lookup") {
      call = "lookup.call(query=\"" + prompt.substr(0, prompt.find('?')) + "\")";
    } else if (family == "lookup_calc") {
      call = "calculator.call(expression=\"" + answer + "\")";
    } else {
      call = "print(" + answer + ")";
    }
    // First attempt: the right call but a wrong answer; second: the right answer.
    std::string tool = "<|python_tag|>" + call + "<|eom_id|>";
    cands.push_back(
        {{"id", p["id"]}, {"attempts", {tool + "Answer: wrong", tool + "Answer: " + answer}}});
  }
  EXPECT_GE(families.size(), 3u);
  write_lines(path("cand.jsonl"), cands);
  std::string err;
  ASSERT_EQ(run("synth tool --count 8 --seed 5 --candidates " + path("cand.jsonl") + " --out " +
                    path("d.jsonl"),
                &err),
            0)
      << err;
  for (const auto& row : lines(path("d.jsonl"))) {
    ASSERT_TRUE(row["kept"].get<bool>()) << row.dump(1);
    const json& m = row["messages"];
    // system, user, call (w0), ipython, answer (w0), feedback, call (w1), ipython, answer (w1)
    ASSERT_EQ(m.size(), 9u) << m.dump(1);
    EXPECT_EQ(m[0]["role"], "system");
    EXPECT_EQ(m[2]["weight"], 0);
    EXPECT_EQ(m[3]["role"], "ipython");
    EXPECT_EQ(m[5]["role"], "user");
    EXPECT_EQ(m[6]["weight"], 1);
    EXPECT_EQ(m[7]["role"], "ipython");
    EXPECT_EQ(m[8]["content"], "Answer: " + row["answer"].get<std::string>());
  }
}

TEST_F(Cli, VerifyMathAndCodeNearMisses) {
  std::string fx = std::string(POSTTRAIN_FIXTURES) + "/synthetic/";
  ASSERT_EQ(
      run("verify --kind math --input " + fx + "verify_math.jsonl --output " + path("m.jsonl")), 0);
  std::map<std::string, json> m;
  for (const auto& r : lines(path("m.jsonl"))) m[r["id"]] = r;
  EXPECT_TRUE(m["right"]["passed"].get<bool>());
  EXPECT_FALSE(m["off-by-one"]["passed"].get<bool>());
  EXPECT_TRUE(m["half-decimal"]["passed"].get<bool>());
  EXPECT_TRUE(m["half-frac"]["passed"].get<bool>());
  EXPECT_FALSE(m["wrong-step"]["passed"].get<bool>());
  EXPECT_EQ(m["no-answer"]["verdict"], "fail");
  EXPECT_EQ(m["right"]["prompt"], "6 * 7?");  // the input is repeated

  ASSERT_EQ(run("verify --kind code --workers 2 --timeout 1 --input " + fx +
                "verify_code.jsonl --output " + path("c.jsonl")),
            0);
  std::map<std::string, json> c;
  for (const auto& r : lines(path("c.jsonl"))) c[r["id"]] = r;
  EXPECT_EQ(c["right"]["verdict"], "pass");
  EXPECT_EQ(c["prints"]["verdict"], "pass");
  EXPECT_EQ(c["partial"]["verdict"], "fail");
  EXPECT_EQ(c["partial"]["details"]["tests_passed"], 1);
  EXPECT_EQ(c["syntax"]["verdict"], "error");
  EXPECT_TRUE(c["loop"]["verdict"] == "timeout" || c["loop"]["verdict"] == "limit");
}

// `verify --kind code` runs candidates in the sandbox: a candidate that lists and reads what it
// can and returns it through an assertion message finds nothing of the host in its feedback.
TEST_F(Cli, VerifyCodeCandidateSeesNothingOfTheHost) {
  const std::string fixtures = POSTTRAIN_FIXTURES;
  const std::string checkout = fs::canonical(fs::path(fixtures) / ".." / "..").string();
  const std::string secret = "posttrain-secret-" + std::to_string(getpid());
  ::setenv("POSTTRAIN_SANDBOX_SECRET", secret.c_str(), 1);
  const std::string code =
      "```python\nimport os\n"
      "def read(p):\n"
      "    try:\n"
      "        return open(p, 'rb').read().decode()\n"
      "    except OSError as e:\n"
      "        return type(e).__name__\n```";
  // Each probe is one test `assert <probe> == 0`, so its value comes back as "got ...".
  std::map<std::string, std::string> probes = {
      {"root", "sorted(os.listdir('/'))"},
      {"checkout", "read('" + checkout + "/README.md')"},
      {"fixture", "read('" + fixtures + "/synthetic/reference_solutions.json')"},
      {"input", "read('" + path("in.jsonl") + "')"},
      {"init_env", "read('/proc/1/environ')"},
      {"pids", "sorted(p for p in os.listdir('/proc') if p.isdigit())"},
      {"env", "os.environ.get('POSTTRAIN_SANDBOX_SECRET')"},
      {"passwd", "read('/etc/passwd').split(':')[0]"},
      {"etc", "sorted(os.listdir('/etc'))"}};
  std::vector<json> rows;
  for (const auto& [id, expr] : probes) {
    rows.push_back({{"id", id}, {"prompt", "p"}, {"response", code},
                    {"tests", {"assert " + expr + " == 0"}}});
  }
  write_lines(path("in.jsonl"), rows);
  int status = run("verify --kind code --workers 2 --input " + path("in.jsonl") + " --output " +
                   path("out.jsonl"));
  ::unsetenv("POSTTRAIN_SANDBOX_SECRET");
  ASSERT_EQ(status, 0);
  std::map<std::string, std::string> got;
  for (const auto& r : lines(path("out.jsonl"))) {
    std::string fb = r["feedback"];
    size_t at = fb.find("  ->  got ");
    ASSERT_NE(at, std::string::npos) << fb;
    got[r["id"]] = fb.substr(at + 10, fb.rfind(", expected 0") - at - 10);
    EXPECT_EQ(fb.find(secret), std::string::npos) << fb;
  }
  // The sandbox's own mounts, /usr, and the host's /bin, /sbin, /lib* entries (links into /usr).
  std::set<std::string> entries = {"dev", "etc", "proc", "tmp", "usr"};
  for (const char* e : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    if (fs::exists(fs::symlink_status(std::string("/") + e))) entries.insert(e);
  }
  std::string root;
  for (const auto& e : entries) root += (root.empty() ? "['" : ", '") + e + "'";
  root += "]";
  EXPECT_EQ(got["root"], root);
  EXPECT_EQ(got["checkout"], "'FileNotFoundError'");
  EXPECT_EQ(got["fixture"], "'FileNotFoundError'");
  EXPECT_EQ(got["input"], "'FileNotFoundError'");
  EXPECT_EQ(got["init_env"], "''");
  EXPECT_EQ(got["pids"], "['1', '2']");
  EXPECT_EQ(got["env"], "None");
  EXPECT_EQ(got["passwd"], "'sandbox'");
  EXPECT_EQ(got["etc"], "['group', 'hostname', 'hosts', 'passwd']");
}

TEST_F(Cli, VerifyRefusesADeeplyNestedRowByLineAndField) {
  // {"x": [[[...100000...]]], ...}: writing the row back out recursed until SIGSEGV.
  std::ofstream(path("deep.jsonl"))
      << "{\"id\": \"a\", \"prompt\": \"p\", \"response\": \"Answer: 1\", \"answer\": \"1\"}\n"
      << "{\"x\": " << std::string(100000, '[') << std::string(100000, ']')
      << ", \"id\": \"b\", \"prompt\": \"p\", \"response\": \"Answer: 1\", \"answer\": \"1\"}\n";
  std::string err;
  EXPECT_EQ(run("verify --kind math --input " + path("deep.jsonl") + " --output " +
                    path("out.jsonl"),
                &err),
            1);
  EXPECT_NE(err.find("deep.jsonl:2: field 'x': JSON nested deeper than 256 levels"),
            std::string::npos)
      << err;
}

TEST_F(Cli, VerifyToolRunsTheCalls) {
  std::string fx = std::string(POSTTRAIN_FIXTURES) + "/synthetic/";
  ASSERT_EQ(
      run("verify --kind tool --input " + fx + "verify_tool.jsonl --output " + path("t.jsonl")), 0);
  auto rows = lines(path("t.jsonl"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_TRUE(rows[0]["passed"].get<bool>());
  EXPECT_EQ(rows[0]["messages"][1]["role"], "ipython");
  EXPECT_EQ(rows[0]["messages"][1]["content"], "80779853376");
  EXPECT_FALSE(rows[1]["passed"].get<bool>());
  EXPECT_NE(rows[1]["messages"][1]["content"].get<std::string>().find("37 meters"),
            std::string::npos);
  EXPECT_TRUE(rows[2]["passed"].get<bool>());
  EXPECT_EQ(rows[2]["messages"][1]["content"], "285\n");
}

TEST_F(Cli, RefusalsAndBadInputAreClear) {
  std::string err;
  // Without LibTorch --model is refused as such; with it, the missing folder is named.
  EXPECT_NE(run("synth math --count 2 --model /some/model --out " + path("x.jsonl"), &err), 0);
  EXPECT_TRUE(err.find("without LibTorch") != std::string::npos ||
              err.find("/some/model") != std::string::npos)
      << err;
  EXPECT_EQ(run("synth math --count 2", &err), 2);
  EXPECT_NE(err.find("--output"), std::string::npos) << err;
  EXPECT_EQ(run("synth poetry --count 2 --out " + path("x.jsonl"), &err), 2);
  write_lines(path("cand.jsonl"), {{{"id", "math-0-0"}, {"attempts", {"Answer: 1"}}},
                                   {{"id", "nope"}, {"attempts", {"Answer: 1"}}}});
  EXPECT_EQ(
      run("synth math --count 2 --candidates " + path("cand.jsonl") + " --out " + path("x.jsonl"),
          &err),
      1);
  EXPECT_NE(err.find("cand.jsonl:2"), std::string::npos) << err;
  EXPECT_NE(err.find("'id'"), std::string::npos) << err;
  write_lines(path("bad.jsonl"), {{{"id", "a"}, {"prompt", "p"}, {"response", "r"}}});
  EXPECT_EQ(
      run("verify --kind math --input " + path("bad.jsonl") + " --output " + path("x.jsonl"), &err),
      1);
  EXPECT_NE(err.find("bad.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("answer"), std::string::npos) << err;
  // Sandbox memory above the machine's (no limit at all, and an overflow past 2^43 MiB).
  for (const char* mb : {"99999999999", "63"}) {
    EXPECT_EQ(run(std::string("verify --kind math --memory-mb ") + mb + " --input " +
                      path("bad.jsonl") + " --output " + path("x.jsonl"),
                  &err),
              2);
    EXPECT_NE(err.find("--memory-mb must be in [64, "), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace posttrain::synthetic
