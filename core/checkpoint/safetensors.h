// safetensors files: a memory-mapped reader that validates the whole header before any tensor
// data is touched, and writers (all at once, or streaming tensor by tensor for models too big to
// hold). Format: u64 little-endian header length N, N bytes of JSON {name: {"dtype", "shape",
// "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data section; offsets are
// relative to the data section. We accept F32, BF16 and F16 tensors; any other dtype is refused
// by name. Every error names the file and, where one is involved, the tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace posttrain::core {

struct SafetensorsEntry {
  std::string name;
  at::ScalarType dtype = at::kFloat;  // kFloat, kBFloat16 or kHalf
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section, end exclusive
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;        // in file order of their data
  std::map<std::string, std::string> metadata;  // "__metadata__", string values only
  uint64_t data_offset = 0;                     // 8 + header length
};

// Parses and validates the first bytes of a safetensors file of `file_size` bytes: header length
// within the file, JSON well-formed, each entry's dtype known, shape × dtype size == byte span,
// offsets inside the data section and not overlapping. `bytes` must hold at least the first
// min(file_size, 8 + header length) bytes. Throws InputError naming `path` (and the tensor).
SafetensorsHeader parse_safetensors_header(const char* bytes, uint64_t available,
                                           uint64_t file_size, const std::string& path);

// A read-only memory-mapped safetensors file. Tensors returned by view() share the mapping and
// keep it alive on their own; the file must not be modified while any exist.
class SafetensorsFile {
 public:
  // Opens, maps and validates. Throws IoError (cannot open/map) or InputError (bad header).
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  // Throws InputError naming the file when `name` is absent.
  const SafetensorsEntry& entry(const std::string& name) const;

  // Zero-copy CPU tensor over the mapped bytes when suitably aligned, else a copy. Read-only in
  // spirit: writing into it is undefined (the mapping is private, so the file never changes).
  at::Tensor view(const std::string& name) const;
  // An owning copy converted to `dtype` (default: the stored dtype) on `device`.
  at::Tensor read(const std::string& name, std::optional<at::ScalarType> dtype = std::nullopt,
                  at::Device device = at::kCPU) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// The file's dtype name: "F32", "BF16", "F16". Throws UsageError for other scalar types.
std::string safetensors_dtype_name(at::ScalarType t);

// Writes `tensors` (any device/float dtype; converted to `dtype`, which must be kFloat, kBFloat16
// or kHalf) to `path` with metadata {"format": "pt"} plus `metadata`. Names must be unique.
// Writes to a temporary file then renames, so a crash never leaves a half-written file.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      at::ScalarType dtype,
                      const std::map<std::string, std::string>& metadata = {});

// Streaming writer: the header is written from (name, shape) up front, then each tensor's data
// in the same order, so only one tensor needs to exist at a time.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path,
                    const std::vector<std::pair<std::string, std::vector<int64_t>>>& layout,
                    at::ScalarType dtype, const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  // The next tensor of the layout; its name and shape must match. Converted to the file dtype.
  void write(const std::string& name, const at::Tensor& tensor);
  // Flushes and renames into place; throws IoError on failure or when tensors are missing.
  void finish();
  uint64_t data_bytes() const { return total_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  uint64_t total_ = 0;
};

}  // namespace posttrain::core
