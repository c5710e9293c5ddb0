#include "common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace posttrain {

std::string format_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm%02lds", (long)(s / 3600), (long)(s / 60 % 60), (long)(s % 60));
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", (long)(s / 60), (long)(s % 60));
  else std::snprintf(buf, sizeof buf, "%lds", (long)s);
  return buf;
}

Progress::Progress(std::string label, int64_t total, int force_tty)
    : label_(std::move(label)), total_(total),
      tty_(force_tty >= 0 ? force_tty != 0 : isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::update(int64_t done, const std::string& extra) {
  done_ = done;
  extra_ = extra;
  auto now = std::chrono::steady_clock::now();
  if (tty_ && (now - last_draw_ > std::chrono::milliseconds(100) || (total_ > 0 && done >= total_))) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_) draw(true);
}

void Progress::draw(bool final_line) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? done_ / elapsed : 0;
  std::string line = "\r" + label_ + " ";
  if (total_ > 0) {
    const int width = 30;
    int filled = static_cast<int>(width * std::min<double>(1.0, double(done_) / total_));
    line += "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    line += std::to_string(done_) + "/" + std::to_string(total_);
    double eta = rate > 0 ? (total_ - done_) / rate : 0;
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.2f/s ETA %s", rate, format_duration(eta).c_str());
    line += buf;
  } else {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%ld done %.2f/s", (long)done_, rate);
    line += buf;
  }
  line += " " + format_duration(elapsed);
  if (!extra_.empty()) line += " | " + extra_;
  line += "\033[K";
  if (final_line) line += "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace posttrain
