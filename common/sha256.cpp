#include "common/sha256.h"

#include <openssl/evp.h>

#include "common/error.h"
#include "common/hex.h"

namespace posttrain {

std::string sha256_digest(std::string_view bytes) {
  // One reusable context per thread: EVP_Digest would allocate and free a context per call.
  struct Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Ctx c;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!c.ctx || EVP_DigestInit_ex(c.ctx, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(c.ctx, bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(c.ctx, out, &len) != 1) {
    throw Error("SHA-256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string sha256_hex(std::string_view bytes) { return to_hex(sha256_digest(bytes)); }

}  // namespace posttrain
