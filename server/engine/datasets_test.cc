#include "server/engine/datasets.h"

#include <sys/stat.h>
#include <zlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string BigEndian(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
          static_cast<char>(value >> 8), static_cast<char>(value)};
}

std::string IdxImages(int count, int rows, int cols) {
  std::string bytes =
      std::string("\0\0\x08\x03", 4) + BigEndian(count) + BigEndian(rows) + BigEndian(cols);
  for (int i = 0; i < count * rows * cols; ++i) bytes.push_back(static_cast<char>(i % 251));
  return bytes;
}

std::string IdxLabels(const std::vector<uint8_t>& labels) {
  std::string bytes = std::string("\0\0\x08\x01", 4) + BigEndian(labels.size());
  for (uint8_t label : labels) bytes.push_back(static_cast<char>(label));
  return bytes;
}

class DatasetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("gradlab_datasets");
    fs::create_directories(dir_);
  }

  void WriteRaw(const fs::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  void WriteGzip(const fs::path& path, const std::string& bytes) {
    gzFile file = gzopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    ASSERT_EQ(gzwrite(file, bytes.data(), bytes.size()), static_cast<int>(bytes.size()));
    gzclose(file);
  }

  // A complete small MNIST-format folder; `gzip` picks the compressed file names.
  void WriteIdxDataset(bool gzip) {
    auto write = [&](const std::string& name, const std::string& bytes) {
      if (gzip) {
        WriteGzip(dir_ / (name + ".gz"), bytes);
      } else {
        WriteRaw(dir_ / name, bytes);
      }
    };
    write("train-images-idx3-ubyte", IdxImages(4, 28, 28));
    write("train-labels-idx1-ubyte", IdxLabels({0, 9, 3, 3}));
    write("t10k-images-idx3-ubyte", IdxImages(2, 28, 28));
    write("t10k-labels-idx1-ubyte", IdxLabels({1, 2}));
  }

  std::string CifarRecords(const std::vector<uint8_t>& labels) {
    std::string bytes;
    for (uint8_t label : labels) {
      bytes.push_back(static_cast<char>(label));
      for (int i = 0; i < 3072; ++i) bytes.push_back(static_cast<char>((i + label) % 256));
    }
    return bytes;
  }

  void WriteCifarDataset(const fs::path& dir) {
    fs::create_directories(dir);
    for (int b = 1; b <= 5; ++b) {
      WriteRaw(dir / ("data_batch_" + std::to_string(b) + ".bin"),
               CifarRecords({static_cast<uint8_t>(b), 0}));
    }
    WriteRaw(dir / "test_batch.bin", CifarRecords({7}));
  }

  absl::StatusOr<Dataset> Load(const std::string& name, int64_t max_train = 0) {
    DatasetRequest request;
    request.name = name;
    request.data_dir = dir_.string();
    request.max_train_samples = max_train;
    return LoadDataset(request);
  }

  void ExpectError(const std::string& name, absl::StatusCode code, const std::string& text) {
    absl::StatusOr<Dataset> dataset = Load(name);
    ASSERT_FALSE(dataset.ok());
    EXPECT_EQ(dataset.status().code(), code) << dataset.status();
    EXPECT_THAT(std::string(dataset.status().message()), HasSubstr(text));
  }

  fs::path dir_;
};

TEST_F(DatasetsTest, ReadsRawIdx) {
  WriteIdxDataset(/*gzip=*/false);
  absl::StatusOr<Dataset> dataset = Load("fashion_mnist");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->train.images.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
  EXPECT_EQ(dataset->train.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(dataset->train.images[0][0][0][5].item<int>(), 5);
  EXPECT_EQ(dataset->train.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(dataset->train.labels[1].item<int64_t>(), 9);
  EXPECT_EQ(dataset->test.size(), 2);
  EXPECT_DOUBLE_EQ(dataset->mean[0], 0.2860);
  EXPECT_DOUBLE_EQ(dataset->std[0], 0.3530);
}

TEST_F(DatasetsTest, ReadsGzippedIdxIdenticallyToRaw) {
  WriteIdxDataset(/*gzip=*/true);
  absl::StatusOr<Dataset> gzipped = Load("mnist");
  ASSERT_TRUE(gzipped.ok()) << gzipped.status();
  EXPECT_DOUBLE_EQ(gzipped->mean[0], 0.1307);
  SetUp();
  WriteIdxDataset(/*gzip=*/false);
  absl::StatusOr<Dataset> raw = Load("mnist");
  ASSERT_TRUE(raw.ok());
  EXPECT_TRUE(torch::equal(gzipped->train.images, raw->train.images));
  EXPECT_TRUE(torch::equal(gzipped->test.labels, raw->test.labels));
}

TEST_F(DatasetsTest, MaxTrainSamplesKeepsTheFirstSamples) {
  WriteIdxDataset(/*gzip=*/false);
  absl::StatusOr<Dataset> dataset = Load("fashion_mnist", /*max_train=*/3);
  ASSERT_TRUE(dataset.ok());
  EXPECT_EQ(dataset->train.size(), 3);
  EXPECT_EQ(dataset->train.labels[2].item<int64_t>(), 3);
}

TEST_F(DatasetsTest, MissingFolderSaysWhereItLooked) {
  fs::remove_all(dir_);
  ExpectError("fashion_mnist", absl::StatusCode::kFailedPrecondition,
              "dataset fashion_mnist is not present: no train-images-idx3-ubyte or "
              "train-images-idx3-ubyte.gz in " +
                  dir_.string() + " (Debian package dataset-fashion-mnist)");
}

TEST_F(DatasetsTest, MissingLabelFileIsNamed) {
  WriteIdxDataset(/*gzip=*/false);
  fs::remove(dir_ / "t10k-labels-idx1-ubyte");
  ExpectError("mnist", absl::StatusCode::kFailedPrecondition,
              "missing file: looked for t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz");
}

TEST_F(DatasetsTest, BadMagicNumber) {
  WriteIdxDataset(/*gzip=*/false);
  WriteRaw(dir_ / "train-labels-idx1-ubyte", std::string("\0\0\x09\x01", 4) + BigEndian(4));
  ExpectError("mnist", absl::StatusCode::kDataLoss,
              "train-labels-idx1-ubyte: bad magic number 0x00000901; expected 0x00000801");
}

TEST_F(DatasetsTest, TruncatedRawFile) {
  WriteIdxDataset(/*gzip=*/false);
  std::string images = IdxImages(4, 28, 28);
  WriteRaw(dir_ / "train-images-idx3-ubyte", images.substr(0, images.size() - 100));
  ExpectError("mnist", absl::StatusCode::kDataLoss,
              "train-images-idx3-ubyte: header declares 4 x 28 x 28 = 3136 bytes of data but the "
              "file holds 3036 (truncated)");
}

TEST_F(DatasetsTest, ShortHeader) {
  WriteIdxDataset(/*gzip=*/false);
  WriteRaw(dir_ / "train-images-idx3-ubyte", std::string("\0\0\x08", 3));
  ExpectError("mnist", absl::StatusCode::kDataLoss,
              "3 bytes is too short for an IDX header of 16 bytes");
}

TEST_F(DatasetsTest, TruncatedGzip) {
  WriteIdxDataset(/*gzip=*/true);
  const fs::path path = dir_ / "train-images-idx3-ubyte.gz";
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WriteRaw(path, bytes.substr(0, bytes.size() / 2));
  ExpectError("mnist", absl::StatusCode::kDataLoss,
              "train-images-idx3-ubyte.gz: gzip stream is truncated or corrupt");
}

TEST_F(DatasetsTest, LabelOutOfRange) {
  WriteIdxDataset(/*gzip=*/false);
  WriteRaw(dir_ / "train-labels-idx1-ubyte", IdxLabels({0, 12, 3, 3}));
  ExpectError("mnist", absl::StatusCode::kDataLoss,
              "train-labels-idx1-ubyte: label 12 of record 1 is out of range [0, 9]");
}

TEST_F(DatasetsTest, ImageAndLabelCountsDisagree) {
  WriteIdxDataset(/*gzip=*/false);
  WriteRaw(dir_ / "t10k-labels-idx1-ubyte", IdxLabels({1, 2, 3}));
  ExpectError("mnist", absl::StatusCode::kDataLoss, "holds 2 images but");
}

// A FIFO would block a reader until some writer opens it; it is refused without opening it
// for longer than a look.
TEST_F(DatasetsTest, AFifoIsRefusedWithoutBlocking) {
  WriteIdxDataset(/*gzip=*/false);
  fs::remove(dir_ / "train-labels-idx1-ubyte");
  ASSERT_EQ(mkfifo((dir_ / "train-labels-idx1-ubyte").c_str(), 0600), 0);
  ExpectError("mnist", absl::StatusCode::kFailedPrecondition,
              "train-labels-idx1-ubyte: is a FIFO; datasets are read from regular files only");
}

TEST_F(DatasetsTest, ADirectoryOrDeviceIsRefused) {
  WriteIdxDataset(/*gzip=*/false);
  fs::remove(dir_ / "t10k-images-idx3-ubyte");
  fs::create_directory(dir_ / "t10k-images-idx3-ubyte");
  ExpectError("mnist", absl::StatusCode::kFailedPrecondition,
              "t10k-images-idx3-ubyte: is a directory; datasets are read from regular files only");
  fs::remove(dir_ / "t10k-images-idx3-ubyte");
  fs::create_symlink("/dev/zero", dir_ / "t10k-images-idx3-ubyte");
  ExpectError("mnist", absl::StatusCode::kFailedPrecondition,
              "t10k-images-idx3-ubyte: is a character device");
}

TEST_F(DatasetsTest, ASymbolicLinkToARegularFileIsRead) {
  WriteIdxDataset(/*gzip=*/false);
  fs::rename(dir_ / "t10k-labels-idx1-ubyte", dir_ / "labels.real");
  fs::create_symlink(dir_ / "labels.real", dir_ / "t10k-labels-idx1-ubyte");
  EXPECT_TRUE(Load("mnist").ok());
}

TEST_F(DatasetsTest, StopsBetweenReadsWhenStopped) {
  // Large enough for several 64 KiB reads.
  WriteRaw(dir_ / "train-images-idx3-ubyte", IdxImages(400, 28, 28));
  WriteRaw(dir_ / "train-labels-idx1-ubyte", IdxLabels(std::vector<uint8_t>(400, 1)));
  WriteRaw(dir_ / "t10k-images-idx3-ubyte", IdxImages(2, 28, 28));
  WriteRaw(dir_ / "t10k-labels-idx1-ubyte", IdxLabels({1, 2}));
  std::atomic<bool> stop{false};
  int reads = 0;
  DatasetRequest request;
  request.name = "mnist";
  request.data_dir = dir_.string();
  request.stop_requested = &stop;
  request.after_read = [&] {
    if (++reads == 2) stop.store(true);
  };
  absl::StatusOr<Dataset> dataset = LoadDataset(request);
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kCancelled) << dataset.status();
  EXPECT_THAT(std::string(dataset.status().message()),
              HasSubstr("stopped while loading " + (dir_ / "train-images-idx3-ubyte").string()));
  EXPECT_EQ(reads, 2);

  stop.store(false);
  request.after_read = nullptr;
  ASSERT_TRUE(LoadDataset(request).ok());
  stop.store(true);
  request.name = "synthetic";
  EXPECT_EQ(LoadDataset(request).status().code(), absl::StatusCode::kCancelled);
}

TEST_F(DatasetsTest, CifarFromTheFolderOrItsParent) {
  WriteCifarDataset(dir_ / "cifar-10-batches-bin");
  absl::StatusOr<Dataset> dataset = Load("cifar10");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->location, (dir_ / "cifar-10-batches-bin").string());
  EXPECT_EQ(dataset->train.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  EXPECT_EQ(dataset->test.size(), 1);
  // Record layout: label byte, then 1024 red, 1024 green, 1024 blue pixel bytes.
  EXPECT_EQ(dataset->train.labels[2].item<int64_t>(), 2);
  EXPECT_EQ(dataset->train.images[2][1][0][0].item<int>(), (1024 + 2) % 256);
  EXPECT_EQ(dataset->test.labels[0].item<int64_t>(), 7);
  EXPECT_NEAR(dataset->mean[2], 0.4465, 1e-12);

  absl::StatusOr<std::string> located =
      LocateDataset("cifar10", {(dir_ / "cifar-10-batches-bin").string()});
  ASSERT_TRUE(located.ok());
  EXPECT_EQ(*located, (dir_ / "cifar-10-batches-bin").string());
}

TEST_F(DatasetsTest, CifarWrongSize) {
  WriteCifarDataset(dir_);
  WriteRaw(dir_ / "data_batch_3.bin", CifarRecords({1}) + "xyz");
  ExpectError("cifar10", absl::StatusCode::kDataLoss,
              "data_batch_3.bin: 3076 bytes is not a whole number of 3073-byte records");
}

TEST_F(DatasetsTest, CifarLabelOutOfRange) {
  WriteCifarDataset(dir_);
  WriteRaw(dir_ / "test_batch.bin", CifarRecords({3, 10}));
  ExpectError("cifar10", absl::StatusCode::kDataLoss,
              "test_batch.bin: label 10 of record 1 is out of range [0, 9]");
}

TEST_F(DatasetsTest, CifarMissingTestBatch) {
  WriteCifarDataset(dir_);
  fs::remove(dir_ / "test_batch.bin");
  ExpectError("cifar10", absl::StatusCode::kNotFound, "test_batch.bin: cannot open");
}

TEST_F(DatasetsTest, CifarNotPresent) {
  ExpectError("cifar10", absl::StatusCode::kFailedPrecondition,
              "dataset cifar10 is not present: no data_batch_1.bin in " + dir_.string() + ", " +
                  dir_.string() + "/cifar-10-batches-bin");
}

TEST(DatasetSearchPathTest, SpecFolderAloneOrServerRootThenSystemCopy) {
  EXPECT_EQ(DatasetSearchPath("mnist", "/x", "/root"), (std::vector<std::string>{"/x"}));
  EXPECT_EQ(DatasetSearchPath("cifar10", "", "/root"),
            (std::vector<std::string>{"/root", "/root/cifar10"}));
  EXPECT_EQ(DatasetSearchPath("fashion_mnist", "", "/root"),
            (std::vector<std::string>{"/root/fashion-mnist", "/root/fashion_mnist",
                                      "/usr/share/datasets/fashion-mnist"}));
  EXPECT_EQ(DatasetSearchPath("fashion_mnist", "", ""),
            (std::vector<std::string>{"/usr/share/datasets/fashion-mnist"}));
  EXPECT_TRUE(DatasetSearchPath("cifar10", "", "").empty());
  absl::StatusOr<std::string> none = LocateDataset("cifar10", {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("any folder (none configured)"));
}

TEST(SyntheticDatasetTest, SameSeedSameDataOtherSeedOtherData) {
  DatasetRequest request;
  request.name = "synthetic";
  request.max_train_samples = 100;
  request.max_test_samples = 30;
  request.synthetic.channels = 1;
  request.synthetic.height = 12;
  request.synthetic.width = 16;
  absl::StatusOr<Dataset> a = LoadDataset(request);
  absl::StatusOr<Dataset> b = LoadDataset(request);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->train.images.sizes(), (std::vector<int64_t>{100, 1, 12, 16}));
  EXPECT_EQ(a->test.size(), 30);
  EXPECT_TRUE(torch::equal(a->train.images, b->train.images));
  EXPECT_TRUE(torch::equal(a->test.labels, b->test.labels));
  // Balanced classes.
  EXPECT_TRUE(torch::equal(torch::bincount(a->train.labels), torch::full({10}, 10, torch::kLong)));
  request.seed = 7;
  absl::StatusOr<Dataset> c = LoadDataset(request);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(torch::equal(a->train.images, c->train.images));
  EXPECT_GT(a->std[0], 0.05);
}

TEST(FashionMnistPackageTest, LoadsTheDebianPackage) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    GTEST_FAIL() << "Fashion-MNIST missing: scripts/setup installs dataset-fashion-mnist";
  }
  DatasetRequest request;
  request.name = "fashion_mnist";
  absl::StatusOr<Dataset> dataset = LoadDataset(request);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(dataset->test.size(), 10000);
  // 6,000 training images of each class; pixel mean matches the normalisation constant.
  EXPECT_TRUE(
      torch::equal(torch::bincount(dataset->train.labels), torch::full({10}, 6000, torch::kLong)));
  EXPECT_NEAR(dataset->train.images.to(torch::kFloat64).mean().item<double>() / 255.0, 0.2860,
              1e-3);
}

}  // namespace
}  // namespace gradlab
