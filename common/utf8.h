// UTF-8 validation for every reader of text input.
#pragma once

#include <string_view>

namespace posttrain {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, max U+10FFFF). ASCII runs
// are skipped eight bytes at a time.
bool is_valid_utf8(std::string_view s);

}  // namespace posttrain
