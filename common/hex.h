// Lower-case hex encoding of bytes, and back.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace posttrain {

std::string to_hex(std::string_view bytes);
// The bytes of `hex` (either case); nullopt on an odd length or a non-hex character.
std::optional<std::string> from_hex(std::string_view hex);

}  // namespace posttrain
