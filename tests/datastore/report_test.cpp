// The HTML report: charts and tables drawn from what the store holds (one chart per eval name
// and per training run, one polyline point per stored value), text escaped, and the page as a
// real browser parses it (headless Chromium's --dump-dom; skipped where Chromium is absent).
#include "datastore/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "datastore/store.h"

namespace posttrain::datastore {
namespace {

namespace fs = std::filesystem;

int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = 0; (pos = text.find(needle, pos)) != std::string::npos; pos += needle.size()) {
    ++n;
  }
  return n;
}

class Report : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("posttrain_report_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "store.db").string();
    Store store = Store::open(db_);
    const int64_t base = store.add_checkpoint("/runs/base", "init", 0);
    const int64_t a = store.add_checkpoint("/runs/round-1/a", "sft", 1, {base});
    const int64_t b = store.add_checkpoint("/runs/round-1/b", "sft", 1, {base});
    store.add_checkpoint("/runs/round-1/avg", "average", 1, {a, b}, {0.25, 0.75});
    // Three rounds of held-out accuracy, two of RM accuracy.
    store.add_eval(base, 0, "heldout_accuracy", 0.10);
    store.add_eval(a, 1, "heldout_accuracy", 0.30);
    store.add_eval(a, 2, "heldout_accuracy", 0.45);
    store.add_eval(a, 1, "rm_accuracy", 0.7);
    store.add_eval(a, 2, "rm_accuracy", 0.8);
    const int64_t run = store.ensure_run("tiny/round-1/<script>sft</script>");
    for (int step = 1; step <= 5; ++step) {
      store.add_metric(run, step, "loss", 5.0 - step);
      store.add_metric(run, step, "lr", 1e-3);  // not drawn
    }
    store.add_metric(run, 5, "eval_loss", 1.5);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::string db_;
};

TEST_F(Report, DrawsWhatTheStoreHolds) {
  Store store = Store::open(db_);
  const std::string html = render_report(store, "r");
  // Two eval charts (by round) + one training run.
  EXPECT_EQ(count(html, "<svg"), 3);
  // heldout_accuracy: 3 round points; rm_accuracy: 2; the run: loss (5) and eval_loss (1).
  std::regex poly("data-name=\"([^\"]+)\"[^>]*points=\"([^\"]*)\"");
  std::map<std::string, std::vector<int>> points;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), poly); it != std::sregex_iterator();
       ++it) {
    std::istringstream ps((*it)[2].str());
    std::string p;
    int n = 0;
    while (ps >> p) ++n;
    points[(*it)[1].str()].push_back(n);
  }
  EXPECT_EQ(points["heldout_accuracy"], std::vector<int>{3});
  EXPECT_EQ(points["rm_accuracy"], std::vector<int>{2});
  EXPECT_EQ(points["loss"], std::vector<int>{5});
  EXPECT_EQ(points["eval_loss"], std::vector<int>{1});
  EXPECT_EQ(points.count("lr"), 0u);
  // Rounds table: header + rounds 0, 1, 2; lineage: 4 checkpoints, the average's weights.
  const size_t rounds_at = html.find("id=\"rounds-table\"");
  ASSERT_NE(rounds_at, std::string::npos);
  EXPECT_EQ(count(html.substr(rounds_at, html.find("</table>", rounds_at) - rounds_at), "<tr>"), 4);
  EXPECT_NE(html.find("#2 × 0.25<br>#3 × 0.75"), std::string::npos);
  // Text from the store never becomes markup; nothing is loaded from elsewhere.
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;sft&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
}

TEST_F(Report, ChartScalesPointsIntoThePlotArea) {
  // Hand-derived: width 520, height 260, margins left 56, right 16, top 28, bottom 44, so the
  // plot spans x 56..504 and y 28..216; (0, 0) maps to (56, 216) and (2, 4) to (504, 28).
  const std::string svg = svg_line_chart("t", "x", {{"s", {{0, 0}, {1, 1}, {2, 4}}}});
  EXPECT_NE(svg.find("points=\"56,216 280,169 504,28 \""), std::string::npos) << svg;
  EXPECT_NE(svg_line_chart("t", "x", {}).find("no data"), std::string::npos);
}

TEST_F(Report, MissingStoreIsAnErrorAndCreatesNothing) {
  const std::string missing = (dir_ / "nope.db").string();
  EXPECT_THROW(write_report(missing, (dir_ / "r.html").string()), IoError);
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_FALSE(fs::exists(dir_ / "r.html"));
}

TEST_F(Report, ABrowserParsesTheCharts) {
  const std::string out = (dir_ / "report.html").string();
  EXPECT_EQ(write_report(db_, out), 3);
  std::string browser;
  for (const char* b : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(b, X_OK) == 0) browser = b;
  }
  if (browser.empty()) GTEST_SKIP() << "Chromium is not installed (apt-get install chromium)";
  const std::string cmd = "timeout 60 " + browser +
                          " --headless --no-sandbox --disable-gpu --dump-dom 'file://" + out +
                          "' 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string dom;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) dom.append(buf, n);
  const int status = ::pclose(p);
  if (dom.empty()) GTEST_SKIP() << "Chromium could not start here (status " << status << ")";
  // The parsed DOM holds the three SVG charts with their polylines and both tables.
  EXPECT_EQ(count(dom, "<svg"), 3) << dom.substr(0, 2000);
  EXPECT_EQ(count(dom, "<polyline"), 4);
  EXPECT_NE(dom.find("id=\"rounds-table\""), std::string::npos);
  EXPECT_NE(dom.find("id=\"lineage-table\""), std::string::npos);
  EXPECT_EQ(dom.find("<script>sft"), std::string::npos);
}

}  // namespace
}  // namespace posttrain::datastore
