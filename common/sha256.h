// SHA-256 through OpenSSL: content hashes for dedup and cache keys.
#pragma once

#include <string>

namespace posttrain {

// Lower-case hex SHA-256 of `bytes`.
std::string sha256_hex(const std::string& bytes);

}  // namespace posttrain
