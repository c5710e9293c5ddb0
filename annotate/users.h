// Annotator accounts: a random bearer token, shown once; the store keeps only its SHA-256.
#pragma once

#include <string>

#include "datastore/store.h"

namespace posttrain::annotate {

// 32 random bytes from the kernel's generator as 64 hex characters.
std::string new_token();
// What the store keeps of a token (hex SHA-256).
std::string token_digest(const std::string& token);
// Adds annotator `name` and returns their token. UsageError for a taken name; InputError for
// an empty name, one over 64 bytes, or one with control characters.
std::string add_user(datastore::Store& store, const std::string& name);

}  // namespace posttrain::annotate
