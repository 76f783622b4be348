#include "server/engine/datasets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/free_memory.h"
#include "server/engine/torch_errors.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;

// No file gradlab reads is larger once decompressed (MNIST's train images are 47 MB).
constexpr int64_t kMaxFileBytes = int64_t{1} << 30;
constexpr int64_t kCifarSide = 32;
constexpr int64_t kCifarRecordBytes = 1 + 3 * kCifarSide * kCifarSide;
constexpr int kIdxUnsignedByte = 0x08;

// What a file is, in words, when it is not a regular file.
const char* FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

absl::Status Cancelled(const std::string& what) {
  return absl::CancelledError(absl::StrCat("stopped while loading ", what));
}

bool StopRequested(const DatasetRequest& request) {
  return request.stop_requested != nullptr && request.stop_requested->load();
}

// Opens `path` for reading if it is a regular file (following symbolic links). Opening
// does not block: O_NONBLOCK keeps a FIFO without a writer from waiting for one; it is
// cleared again for a regular file.
absl::StatusOr<int> OpenRegularFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
    const std::string kind = S_ISREG(info.st_mode) ? std::strerror(errno) : FileKind(info.st_mode);
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": is ", kind, "; datasets are read from regular files only"));
  }
  return fd;
}

// The bytes reading the open file `fd` gives, as far as the file says: its size, or for a
// gzip stream the size its trailer records (modulo 2^32; no more than deflate's largest
// ratio, 1032:1, allows, so that a garbled trailer asks for little). A hint for reserving
// the buffer once: grown by doubling, it would pass through copies whose memory the
// allocator does not always reuse.
int64_t ExpectedContentBytes(int fd) {
  struct stat info;
  if (fstat(fd, &info) != 0) return 0;
  const int64_t size = info.st_size;
  std::array<unsigned char, 4> bytes;
  if (size < 18 || pread(fd, bytes.data(), 2, 0) != 2 || bytes[0] != 0x1f || bytes[1] != 0x8b) {
    return size;
  }
  if (pread(fd, bytes.data(), 4, size - 4) != 4) return size;
  const int64_t trailer_size = int64_t{bytes[0]} | (int64_t{bytes[1]} << 8) |
                               (int64_t{bytes[2]} << 16) | (int64_t{bytes[3]} << 24);
  return std::min(trailer_size, size * 1032);
}

// Reads a whole regular file, raw or gzipped (zlib reads both), refusing anything larger
// than kMaxFileBytes. A truncated or corrupt gzip stream is an error naming the file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, const DatasetRequest& request) {
  if (StopRequested(request)) return Cancelled(path);
  absl::StatusOr<int> fd = OpenRegularFile(path);
  if (!fd.ok()) return fd.status();
  std::string contents;
  contents.reserve(std::min(ExpectedContentBytes(*fd), kMaxFileBytes + 1));
  gzFile file = gzdopen(*fd, "rb");
  if (file == nullptr) {
    close(*fd);
    return absl::ResourceExhaustedError(absl::StrCat(path, ": cannot start reading it"));
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(file, gzclose);
  std::array<char, 1 << 16> buffer;
  while (true) {
    const int n = gzread(file, buffer.data(), buffer.size());
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      return absl::DataLossError(
          absl::StrCat(path, ": cannot read after ", contents.size(), " bytes: ", message));
    }
    if (n == 0) break;
    contents.append(buffer.data(), n);
    if (static_cast<int64_t>(contents.size()) > kMaxFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than the limit of ", kMaxFileBytes, " bytes"));
    }
    if (request.after_read) request.after_read();
    if (StopRequested(request)) return Cancelled(path);
  }
  // gzread reports a gzip stream cut short as end of file plus this error.
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  if (code != Z_OK) {
    return absl::DataLossError(absl::StrCat(path, ": gzip stream is truncated or corrupt after ",
                                            contents.size(), " bytes: ", message));
  }
  return contents;
}

uint32_t BigEndian32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Parses an IDX file of unsigned bytes with `dims` dimensions; returns it as a uint8 tensor.
absl::StatusOr<torch::Tensor> ParseIdx(const std::string& path, const std::string& bytes,
                                       int dims) {
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (bytes.size() < header) {
    return absl::DataLossError(absl::StrCat(
        path, ": ", bytes.size(), " bytes is too short for an IDX header of ", header, " bytes"));
  }
  const auto* magic = reinterpret_cast<const unsigned char*>(bytes.data());
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != kIdxUnsignedByte || magic[3] != dims) {
    return absl::DataLossError(absl::StrFormat(
        "%s: bad magic number 0x%02x%02x%02x%02x; expected 0x000008%02x (IDX, unsigned bytes, "
        "%d dimensions)",
        path, magic[0], magic[1], magic[2], magic[3], dims, dims));
  }
  std::vector<int64_t> shape;
  int64_t expected = 1;
  for (int d = 0; d < dims; ++d) {
    shape.push_back(BigEndian32(bytes, 4 + 4 * d));
    expected *= shape.back();
    if (expected > kMaxFileBytes) {
      return absl::DataLossError(absl::StrCat(path, ": header declares dimensions ",
                                              absl::StrJoin(shape, " x "), ", over the limit"));
    }
  }
  const int64_t actual = static_cast<int64_t>(bytes.size() - header);
  if (actual != expected) {
    return absl::DataLossError(absl::StrCat(path, ": header declares ", absl::StrJoin(shape, " x "),
                                            " = ", expected, " bytes of data but the file holds ",
                                            actual, actual < expected ? " (truncated)" : ""));
  }
  torch::Tensor tensor = torch::empty(shape, torch::kUInt8);
  std::memcpy(tensor.data_ptr<uint8_t>(), bytes.data() + header, expected);
  return tensor;
}

// Finds `name` or `name.gz` in `dir`.
absl::StatusOr<std::string> FindIdxFile(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {name, name + ".gz"}) {
    const fs::path path = fs::path(dir) / candidate;
    if (fs::exists(path)) return path.string();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("missing file: looked for ", name, " and ", name, ".gz in ", dir));
}

absl::Status CheckLabels(const std::string& path, const torch::Tensor& labels,
                         int64_t num_classes) {
  const auto* data = labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) {
    if (data[i] >= num_classes) {
      return absl::DataLossError(absl::StrCat(path, ": label ", int{data[i]}, " of record ", i,
                                              " is out of range [0, ", num_classes - 1, "]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<DatasetSplit> LoadIdxSplit(const std::string& dir, const std::string& prefix,
                                          const DatasetRequest& request) {
  absl::StatusOr<std::string> images_path = FindIdxFile(dir, prefix + "-images-idx3-ubyte");
  if (!images_path.ok()) return images_path.status();
  absl::StatusOr<std::string> labels_path = FindIdxFile(dir, prefix + "-labels-idx1-ubyte");
  if (!labels_path.ok()) return labels_path.status();

  absl::StatusOr<std::string> image_bytes = ReadWholeFile(*images_path, request);
  if (!image_bytes.ok()) return image_bytes.status();
  absl::StatusOr<torch::Tensor> images = ParseIdx(*images_path, *image_bytes, 3);
  if (!images.ok()) return images.status();
  absl::StatusOr<std::string> label_bytes = ReadWholeFile(*labels_path, request);
  if (!label_bytes.ok()) return label_bytes.status();
  absl::StatusOr<torch::Tensor> labels = ParseIdx(*labels_path, *label_bytes, 1);
  if (!labels.ok()) return labels.status();

  if (images->size(0) != labels->size(0)) {
    return absl::DataLossError(absl::StrCat(*images_path, " holds ", images->size(0),
                                            " images but ", *labels_path, " holds ",
                                            labels->size(0), " labels"));
  }
  if (absl::Status status = CheckLabels(*labels_path, *labels, 10); !status.ok()) return status;
  return DatasetSplit{images->unsqueeze(1), labels->to(torch::kInt64)};
}

absl::StatusOr<DatasetSplit> LoadCifarSplit(const std::string& dir,
                                            const std::vector<std::string>& files,
                                            const DatasetRequest& request) {
  std::vector<torch::Tensor> images;
  std::vector<torch::Tensor> labels;
  for (const std::string& file : files) {
    const std::string path = (fs::path(dir) / file).string();
    absl::StatusOr<std::string> bytes = ReadWholeFile(path, request);
    if (!bytes.ok()) return bytes.status();
    const int64_t size = static_cast<int64_t>(bytes->size());
    if (size == 0 || size % kCifarRecordBytes != 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": ", size, " bytes is not a whole number of ", kCifarRecordBytes,
                       "-byte records (1 label byte + 3072 pixel bytes; a standard batch file is ",
                       10000 * kCifarRecordBytes, " bytes)"));
    }
    const int64_t records = size / kCifarRecordBytes;
    torch::Tensor raw = torch::empty({records, kCifarRecordBytes}, torch::kUInt8);
    std::memcpy(raw.data_ptr<uint8_t>(), bytes->data(), size);
    torch::Tensor file_labels = raw.select(1, 0).contiguous();
    if (absl::Status status = CheckLabels(path, file_labels, 10); !status.ok()) return status;
    labels.push_back(file_labels.to(torch::kInt64));
    images.push_back(
        raw.narrow(1, 1, kCifarRecordBytes - 1).reshape({records, 3, kCifarSide, kCifarSide}));
  }
  return DatasetSplit{torch::cat(images), torch::cat(labels)};
}

// Class-dependent low-frequency patterns (drawn at a quarter of the resolution and
// upsampled) plus per-pixel noise, stored as uint8 like the real datasets. Computed in
// place: at its peak it holds two float copies of the images (the noise and the pixels).
DatasetSplit MakeSyntheticSplit(const SyntheticOptions& o, const torch::Tensor& patterns,
                                int64_t size, at::Generator& generator) {
  torch::Tensor labels = torch::arange(size, torch::kInt64).remainder(o.num_classes);
  labels = labels.index_select(0, torch::randperm(size, generator, torch::kInt64));
  torch::Tensor noise = torch::randn({size, o.channels, o.height, o.width}, generator);
  // patterns * 50 + noise * 40 + 128, rounded and clamped to [0, 255].
  torch::Tensor pixels = patterns.index_select(0, labels).mul_(50.0);
  pixels.add_(noise.mul_(40.0)).add_(128.0).round_().clamp_(0, 255);
  noise.reset();
  return DatasetSplit{pixels.to(torch::kUInt8), labels};
}

Dataset MakeSynthetic(const DatasetRequest& request) {
  SyntheticOptions o = request.synthetic;
  if (request.max_train_samples > 0) o.train_size = request.max_train_samples;
  if (request.max_test_samples > 0) o.test_size = request.max_test_samples;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(request.seed);
  torch::Tensor coarse =
      torch::randn({o.num_classes, o.channels, std::max<int64_t>(o.height / 4, 1),
                    std::max<int64_t>(o.width / 4, 1)},
                   generator);
  namespace F = torch::nn::functional;
  torch::Tensor patterns = F::interpolate(coarse, F::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{o.height, o.width})
                                                      .mode(torch::kBilinear)
                                                      .align_corners(false));
  Dataset dataset;
  dataset.name = "synthetic";
  dataset.num_classes = o.num_classes;
  dataset.train = MakeSyntheticSplit(o, patterns, o.train_size, generator);
  dataset.test = MakeSyntheticSplit(o, patterns, o.test_size, generator);
  torch::Tensor pixels = dataset.train.images.to(torch::kFloat64).div_(255.0);
  torch::Tensor mean = pixels.mean({0, 2, 3});
  torch::Tensor std = pixels.std({0, 2, 3});
  for (int64_t c = 0; c < o.channels; ++c) {
    dataset.mean.push_back(mean[c].item<double>());
    dataset.std.push_back(std::max(std[c].item<double>(), 1e-6));
  }
  return dataset;
}

DatasetSplit FirstSamples(const DatasetSplit& split, int64_t limit) {
  if (limit <= 0 || limit >= split.size()) return split;
  return DatasetSplit{split.images.narrow(0, 0, limit).clone(),
                      split.labels.narrow(0, 0, limit).clone()};
}

}  // namespace

absl::StatusOr<Dataset> LoadDataset(const DatasetRequest& request) {
  return CatchTorchErrors([&]() -> absl::StatusOr<Dataset> {
    if (StopRequested(request)) return Cancelled("the dataset's files");
    if (request.name == "synthetic") return MakeSynthetic(request);
    absl::StatusOr<std::string> dir =
        LocateDataset(request.name, DatasetSearchPath(request.name, request.data_dir, ""));
    if (!dir.ok()) return dir.status();
    Dataset dataset;
    dataset.name = request.name;
    dataset.location = *dir;
    absl::StatusOr<DatasetSplit> train, test;
    if (request.name == "cifar10") {
      train = LoadCifarSplit(*dir,
                             {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                              "data_batch_4.bin", "data_batch_5.bin"},
                             request);
      if (train.ok()) test = LoadCifarSplit(*dir, {"test_batch.bin"}, request);
      dataset.mean = {0.4914, 0.4822, 0.4465};
      dataset.std = {0.2470, 0.2435, 0.2616};
    } else {
      train = LoadIdxSplit(*dir, "train", request);
      if (train.ok()) test = LoadIdxSplit(*dir, "t10k", request);
      const bool fashion = request.name == "fashion_mnist";
      dataset.mean = {fashion ? 0.2860 : 0.1307};
      dataset.std = {fashion ? 0.3530 : 0.3081};
    }
    if (!train.ok()) return train.status();
    if (!test.ok()) return test.status();
    if (train->images.sizes().slice(1) != test->images.sizes().slice(1)) {
      return absl::DataLossError(absl::StrCat(
          *dir, ": train images are ", absl::StrJoin(train->images.sizes().slice(1), "x"),
          " but test images are ", absl::StrJoin(test->images.sizes().slice(1), "x")));
    }
    dataset.train = FirstSamples(*train, request.max_train_samples);
    dataset.test = FirstSamples(*test, request.max_test_samples);
    return dataset;
  });
}

absl::StatusOr<std::shared_ptr<const Dataset>> LoadSharedDataset(const DatasetRequest& request) {
  absl::StatusOr<Dataset> dataset = LoadDataset(request);
  // Loading's buffers (files read whole, the synthetic generation's intermediates) are
  // freed: hand them back rather than hold them through the run, whose allocations reuse
  // only part of them.
  ReleaseFreeMemory();
  if (!dataset.ok()) return dataset.status();
  return std::make_shared<const Dataset>(*std::move(dataset));
}

}  // namespace gradlab
