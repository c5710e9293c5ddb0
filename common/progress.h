// A progress bar with rate and ETA on a terminal; silent when stderr is not a terminal, so
// piped output stays parseable (stages log their metrics as JSON lines instead).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace posttrain {

class Progress {
 public:
  // total <= 0: unknown length (no ETA). force_tty overrides the isatty(stderr) check.
  Progress(std::string label, int64_t total, int force_tty = -1);
  ~Progress();
  // Sets the position to `done` and redraws at most ~10 times a second. `extra` is shown
  // after the bar (for example "loss 2.31").
  void update(int64_t done, const std::string& extra = "");
  void finish();
  bool on_terminal() const { return tty_; }

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  std::string extra_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1h02m03s" / "4m05s" / "7s".
std::string format_duration(double seconds);

}  // namespace posttrain
