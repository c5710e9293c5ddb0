// safetensors reading (mmap + header validation) and writing. See safetensors.h for the format.
#include "core/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_depth.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

// Headers larger than this are refused before parsing (the reference implementation's limit).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

InputError header_error(const std::string& path, const std::string& tensor,
                        const std::string& what) {
  return InputError(Location{path, 0, tensor}, "safetensors: " + what);
}

int64_t element_size(at::ScalarType t) { return t == at::kFloat ? 4 : 2; }

bool parse_dtype(const std::string& name, at::ScalarType* out) {
  if (name == "F32")
    *out = at::kFloat;
  else if (name == "BF16")
    *out = at::kBFloat16;
  else if (name == "F16")
    *out = at::kHalf;
  else
    return false;
  return true;
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

SafetensorsEntry parse_entry(const std::string& name, const json& e, uint64_t data_size,
                             const std::string& path) {
  if (!e.is_object()) throw header_error(path, name, "entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) throw header_error(path, name, std::string("missing '") + key + "'");
  }
  SafetensorsEntry out;
  out.name = name;
  if (!e["dtype"].is_string()) throw header_error(path, name, "'dtype' is not a string");
  const std::string dtype = e["dtype"].get<std::string>();
  if (!parse_dtype(dtype, &out.dtype)) {
    throw header_error(path, name, "unsupported dtype '" + dtype + "' (F32, BF16, F16)");
  }
  const json& shape = e["shape"];
  if (!shape.is_array()) throw header_error(path, name, "'shape' is not a list");
  uint64_t count = 1;
  for (const auto& d : shape) {
    if (!d.is_number_unsigned()) {
      throw header_error(path, name, "'shape' holds a non-integer or negative size");
    }
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (v != 0 && count > std::numeric_limits<uint64_t>::max() / 8 / v)) {
      throw header_error(path, name, "'shape' is too large");
    }
    count *= v;
    out.shape.push_back(static_cast<int64_t>(v));
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned()) {
    throw header_error(path, name, "'data_offsets' must be two non-negative integers");
  }
  out.begin = off[0].get<uint64_t>();
  out.end = off[1].get<uint64_t>();
  if (out.begin > out.end) throw header_error(path, name, "data_offsets begin > end");
  if (out.end > data_size) {
    throw header_error(path, name,
                       "data_offsets [" + std::to_string(out.begin) + ", " +
                           std::to_string(out.end) + ") past the end of the data (" +
                           std::to_string(data_size) + " bytes)");
  }
  const uint64_t want = count * static_cast<uint64_t>(element_size(out.dtype));
  if (out.end - out.begin != want) {
    throw header_error(path, name,
                       "shape needs " + std::to_string(want) + " bytes but " +
                           "data_offsets span " + std::to_string(out.end - out.begin));
  }
  return out;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const char* bytes, uint64_t available,
                                           uint64_t file_size, const std::string& path) {
  if (file_size < 8 || available < 8) {
    throw header_error(path, "",
                       "file of " + std::to_string(file_size) + " bytes is too short for a header");
  }
  const uint64_t n = read_u64_le(bytes);
  if (n > file_size - 8) {
    throw header_error(path, "",
                       "header length " + std::to_string(n) + " runs past the end of the file (" +
                           std::to_string(file_size) + " bytes)");
  }
  if (n > kMaxHeaderBytes) throw header_error(path, "", "header larger than 100 MiB");
  if (available < 8 + n) throw header_error(path, "", "header not fully available");
  check_json_depth(bytes + 8, bytes + 8 + n, Location{path, 0, ""});
  json j = json::parse(bytes + 8, bytes + 8 + n, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw header_error(path, "", "header is not valid JSON");
  if (!j.is_object()) throw header_error(path, "", "header is not a JSON object");

  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = file_size - h.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw header_error(path, "__metadata__", "not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) {
          throw header_error(path, "__metadata__." + m.key(), "metadata values must be strings");
        }
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(it.key(), it.value(), data_size, path));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < h.entries.size(); ++i) {
    const auto& prev = h.entries[i - 1];
    const auto& cur = h.entries[i];
    if (cur.begin < prev.end) {
      throw header_error(path, cur.name, "data overlaps tensor '" + prev.name + "'");
    }
  }
  return h;
}

// ---- reading ----

struct SafetensorsFile::Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base && base != MAP_FAILED) munmap(base, size);
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path)
    : path_(path), map_(std::make_shared<Mapping>()) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError("cannot read " + path + ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw header_error(path, "",
                       "file of " + std::to_string(size) + " bytes is too short for a header");
  }
  void* base = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) throw IoError("cannot map " + path + ": " + std::strerror(errno));
  map_->base = base;
  map_->size = size;
  header_ = parse_safetensors_header(static_cast<const char*>(base), size, size, path);
  for (size_t i = 0; i < header_.entries.size(); ++i) {
    if (!index_.emplace(header_.entries[i].name, i).second) {
      throw header_error(path, header_.entries[i].name, "tensor name appears twice");
    }
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, i] : index_) out.push_back(name);
  return out;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw header_error(path_, name, "no such tensor");
  return header_.entries[it->second];
}

at::Tensor SafetensorsFile::view(const std::string& name) const {
  const auto& e = entry(name);
  char* p = static_cast<char*>(map_->base) + header_.data_offset + e.begin;
  const auto opts = at::TensorOptions().dtype(e.dtype);
  if (reinterpret_cast<uintptr_t>(p) % element_size(e.dtype) != 0) {
    auto out = at::empty(e.shape, opts);
    std::memcpy(out.data_ptr(), p, e.end - e.begin);
    return out;
  }
  auto keep = map_;
  return at::from_blob(
      p, e.shape, [keep](void*) {}, opts);
}

at::Tensor SafetensorsFile::read(const std::string& name, std::optional<at::ScalarType> dtype,
                                 at::Device device) const {
  const auto v = view(name);
  return v.to(device, dtype.value_or(v.scalar_type()), /*non_blocking=*/false, /*copy=*/true);
}

std::string safetensors_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "F32";
    case at::kBFloat16:
      return "BF16";
    case at::kHalf:
      return "F16";
    default:
      throw UsageError(std::string("safetensors: cannot store dtype ") + c10::toString(t));
  }
}

// ---- writing ----

struct SafetensorsWriter::State {
  std::string path, tmp;
  std::FILE* file = nullptr;
  std::vector<std::pair<std::string, std::vector<int64_t>>> layout;
  at::ScalarType dtype;
  size_t next = 0;
  bool done = false;
};

SafetensorsWriter::SafetensorsWriter(
    const std::string& path,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& layout, at::ScalarType dtype,
    const std::map<std::string, std::string>& metadata)
    : state_(std::make_unique<State>()) {
  const std::string dtype_name = safetensors_dtype_name(dtype);
  auto& s = *state_;
  s.path = path;
  s.tmp = path + ".tmp";
  s.layout = layout;
  s.dtype = dtype;
  json header = json::object();
  json meta = {{"format", "pt"}};
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const auto& [name, shape] : layout) {
    if (name == "__metadata__" || header.contains(name)) {
      throw UsageError("safetensors: tensor name '" + name + "' repeated or reserved in " + path);
    }
    uint64_t bytes = static_cast<uint64_t>(element_size(dtype));
    for (int64_t d : shape) bytes *= static_cast<uint64_t>(d);
    header[name] = {
        {"dtype", dtype_name}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  total_ = offset;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-aligned
  s.file = std::fopen(s.tmp.c_str(), "wb");
  if (!s.file) throw IoError("cannot write " + s.tmp + ": " + std::strerror(errno));
  char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  if (std::fwrite(len, 1, 8, s.file) != 8 ||
      std::fwrite(text.data(), 1, text.size(), s.file) != text.size()) {
    throw IoError("cannot write " + s.tmp + ": " + std::strerror(errno));
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (state_ && !state_->done) {
    if (state_->file) std::fclose(state_->file);
    std::remove(state_->tmp.c_str());
  }
}

void SafetensorsWriter::write(const std::string& name, const at::Tensor& tensor) {
  auto& s = *state_;
  if (s.next >= s.layout.size() || s.layout[s.next].first != name) {
    throw UsageError("safetensors writer: expected tensor '" +
                     (s.next < s.layout.size() ? s.layout[s.next].first : std::string("<end>")) +
                     "', got '" + name + "' for " + s.path);
  }
  if (tensor.sizes() != at::IntArrayRef(s.layout[s.next].second)) {
    throw UsageError("safetensors writer: tensor '" + name + "' has the wrong shape for " + s.path);
  }
  const auto data = tensor.detach().to(at::kCPU, s.dtype).contiguous();
  const size_t bytes = data.numel() * data.element_size();
  if (bytes && std::fwrite(data.data_ptr(), 1, bytes, s.file) != bytes) {
    throw IoError("cannot write " + s.tmp + ": " + std::strerror(errno));
  }
  ++s.next;
}

void SafetensorsWriter::finish() {
  auto& s = *state_;
  if (s.next != s.layout.size()) {
    throw UsageError("safetensors writer: " + std::to_string(s.layout.size() - s.next) +
                     " tensors never written to " + s.path);
  }
  const bool ok = std::fflush(s.file) == 0 && fsync(fileno(s.file)) == 0;
  const bool closed = std::fclose(s.file) == 0;
  s.file = nullptr;
  if (!ok || !closed || std::rename(s.tmp.c_str(), s.path.c_str()) != 0) {
    std::remove(s.tmp.c_str());
    s.done = true;
    throw IoError("cannot write " + s.path + ": " + std::strerror(errno));
  }
  s.done = true;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      at::ScalarType dtype, const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> layout;
  for (const auto& [name, t] : tensors) layout.emplace_back(name, t.sizes().vec());
  SafetensorsWriter writer(path, layout, dtype, metadata);
  for (const auto& [name, t] : tensors) writer.write(name, t);
  writer.finish();
}

}  // namespace posttrain::core
