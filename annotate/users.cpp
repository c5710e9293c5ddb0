#include "annotate/users.h"

#include <fstream>

#include "common/error.h"
#include "common/sha256.h"
#include "datastore/annotation_store.h"

namespace posttrain::annotate {

std::string new_token() {
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  unsigned char bytes[32];
  if (!urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes)) {
    throw IoError("cannot read /dev/urandom for a token");
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return hex;
}

std::string token_digest(const std::string& token) { return sha256_hex(token); }

std::string add_user(datastore::Store& store, const std::string& name) {
  Location where{"", 0, "NAME"};
  if (name.empty()) throw InputError(where, "empty annotator name");
  if (name.size() > 64) throw InputError(where, "annotator name over 64 bytes");
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) throw InputError(where, "control character in annotator name");
    // Pairs made by two annotators name both, comma-separated.
    if (c == ',') throw InputError(where, "',' in annotator name");
  }
  std::string token = new_token();
  datastore::AnnotationStore(store).add_annotator(name, token_digest(token));
  return token;
}

}  // namespace posttrain::annotate
