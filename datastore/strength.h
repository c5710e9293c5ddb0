// The reward margin of a preference-strength label (Llama 2's margin loss: -log sigmoid(r_chosen
// - r_rejected - m(strength))). One table, used by the reward stage's margin term and by the
// export's `margin` column, so a model trained here and one trained by TRL / OpenRLHF on our
// export see the same numbers. Unlabelled pairs (rejection sampling, synthetic) get 0: the plain
// Bradley-Terry term.
#pragma once

#include <optional>

#include "datastore/store.h"

namespace posttrain::datastore {

// significantly_better 1, better 2/3, slightly_better 1/3, marginally_better 0.
inline double strength_margin(Strength s) {
  switch (s) {
    case Strength::kSignificantlyBetter:
      return 1.0;
    case Strength::kBetter:
      return 2.0 / 3.0;
    case Strength::kSlightlyBetter:
      return 1.0 / 3.0;
    case Strength::kMarginallyBetter:
      return 0.0;
  }
  return 0.0;
}

inline double strength_margin(const std::optional<Strength>& s) {
  return s ? strength_margin(*s) : 0.0;
}

// The margin of each pair a ranking edited > chosen > rejected yields. The label compares chosen
// with rejected, so chosen>rejected carries it, and so does edited>rejected (the edit ranks at
// least as high as chosen); edited>chosen has no label and gets 0.
inline double ranking_pair_margin(const std::optional<Strength>& s, bool better_is_edit,
                                  bool worse_is_chosen) {
  return better_is_edit && worse_is_chosen ? 0.0 : strength_margin(s);
}

}  // namespace posttrain::datastore
