// SHA-256 through OpenSSL: content hashes for dedup and cache keys.
#pragma once

#include <string>
#include <string_view>

namespace posttrain {

// The raw 32-byte SHA-256 of `bytes` (one reusable OpenSSL context per thread).
std::string sha256_digest(std::string_view bytes);
// Lower-case hex SHA-256 of `bytes`.
std::string sha256_hex(std::string_view bytes);

}  // namespace posttrain
