// data_parallel_rank: one rank of a process group, for data_parallel_test, which starts
// several as separate processes (as gradlabd and its workers will be).
//
//   data_parallel_rank --rank=R --world_size=N --store_file=F [--timeout_ms=T] [--steps=S]
//                      [--exit_before_step=K]
//
// Joins the group, meeting the other ranks in the file F (c10d's FileStore behind a
// RendezvousStore: gradlabd's ranks meet in the coordinator's memory instead, which a test
// of separate processes without a coordinator cannot share), then for each step sets
// two parameters' gradients to values known from rank and step, averages them with
// local_samples = rank + 1, and prints "step S: v1 v2 ..." (every averaged value). Errors
// are printed as "error: ..." with exit code 1. --exit_before_step makes the rank vanish
// without a word (exit code 3) before that step, as a crashed worker would.
// --stop_rank=R --stop_at_step=K: rank R votes to stop at step K; every rank then prints
// "stopped at step K: V votes" and exits 0. --broadcast_bytes=B: first, rank 0 broadcasts
// B bytes (byte i = i * 7 mod 251) and every rank prints "broadcast: SIZE SUM" of what it
// holds afterwards.
//
// --train=MODEL instead trains MODEL (by default on the first 2,000 Fashion-MNIST training
// images and 500 test ones, 1 thread per rank) for --epochs, through TrainRank (with
// --world_size=1: Train, no group at all), and rank 0 prints each epoch as
// "epoch E: train_loss train_accuracy test_loss test_accuracy". bench/data_parallel uses
// it with --print_speed.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <torch/csrc/distributed/c10d/FileStore.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/experiment_spec.h"
#include "server/engine/data_parallel.h"
#include "server/engine/datasets.h"
#include "server/engine/trainer.h"

ABSL_FLAG(int, rank, 0, "this rank");
ABSL_FLAG(int, world_size, 1, "ranks in the group");
ABSL_FLAG(std::string, store_file, "", "the file the ranks meet in (the same for all)");
ABSL_FLAG(int, timeout_ms, 20000, "rendezvous and collective timeout");
ABSL_FLAG(int, steps, 3, "all-reduces to do");
ABSL_FLAG(int, exit_before_step, -1, "vanish before this step (-1: never)");
ABSL_FLAG(int, stop_rank, -1, "the rank that votes to stop (-1: none)");
ABSL_FLAG(int, stop_at_step, 0, "the step it votes at");
ABSL_FLAG(int64_t, report_samples, -1,
          "report this sample count to the average instead of rank + 1 (-1: do not)");
ABSL_FLAG(int64_t, broadcast_bytes, -1, "rank 0 broadcasts this many bytes first (-1: no)");
ABSL_FLAG(std::string, train, "", "train this model instead of the all-reduce steps");
ABSL_FLAG(int, epochs, 2, "--train: epochs");
ABSL_FLAG(std::string, dataset, "fashion_mnist",
          "--train: the dataset, looked for as gradlabd does with --data_dir=data");
ABSL_FLAG(int64_t, train_samples, 2000, "--train: the first N training images");
ABSL_FLAG(int64_t, test_samples, 500, "--train: the first N test images");
ABSL_FLAG(int, batch_size, 128, "--train: the global batch");
ABSL_FLAG(int, threads, 1, "--train: intra-op threads per rank");
ABSL_FLAG(bool, print_speed, false,
          "--train: rank 0 also prints each epoch's images/s and, at the end, the gradient "
          "all-reduces' count, seconds and bytes");

namespace gradlab {
namespace {

// A RendezvousStore in a file that every rank opens: c10d's FileStore.
class FileRendezvousStore final : public RendezvousStore {
 public:
  FileRendezvousStore(const std::string& path, int world_size)
      : store_(c10::make_intrusive<c10d::FileStore>(path, world_size)) {}

  absl::Status Set(const std::string& key, const std::string& value) override {
    return Try([&] { store_->set(key, Bytes(value)); });
  }
  absl::StatusOr<std::string> Get(const std::string& key) override {
    std::optional<std::string> value;
    absl::Status status = Try([&] {
      if (store_->check({key})) value = Text(store_->get(key));
    });
    if (!status.ok()) return status;
    if (!value.has_value()) return absl::NotFoundError(absl::StrCat("no key ", key));
    return *value;
  }
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t amount) override {
    int64_t sum = 0;
    absl::Status status = Try([&] { sum = store_->add(key, amount); });
    if (!status.ok()) return status;
    return sum;
  }
  absl::StatusOr<std::string> CompareSet(const std::string& key, const std::string& expected,
                                         const std::string& desired) override {
    std::string value;
    absl::Status status =
        Try([&] { value = Text(store_->compareSet(key, Bytes(expected), Bytes(desired))); });
    if (!status.ok()) return status;
    return value;
  }
  absl::StatusOr<bool> Delete(const std::string& key) override {
    bool deleted = false;
    absl::Status status = Try([&] { deleted = store_->deleteKey(key); });
    if (!status.ok()) return status;
    return deleted;
  }
  absl::StatusOr<bool> Check(const std::vector<std::string>& keys) override {
    bool present = false;
    absl::Status status = Try([&] { present = store_->check(keys); });
    if (!status.ok()) return status;
    return present;
  }
  absl::StatusOr<int64_t> KeyCount() override {
    int64_t count = 0;
    absl::Status status = Try([&] { count = store_->getNumKeys(); });
    if (!status.ok()) return status;
    return count;
  }

 private:
  template <typename F>
  static absl::Status Try(F f) {
    try {
      f();
    } catch (const std::exception& e) {
      return absl::UnavailableError(e.what());
    }
    return absl::OkStatus();
  }
  static std::vector<uint8_t> Bytes(const std::string& text) {
    return std::vector<uint8_t>(text.begin(), text.end());
  }
  static std::string Text(const std::vector<uint8_t>& bytes) {
    return std::string(bytes.begin(), bytes.end());
  }

  c10::intrusive_ptr<c10d::FileStore> store_;
};

class PrintingSink : public TrainingEventSink {
 public:
  explicit PrintingSink(bool print_speed) : print_speed_(print_speed) {}
  void OnBatchProgress(const BatchProgress&) override {}
  void OnGradientSnapshot(const GradientSnapshot&) override {}
  void OnPredictions(const Predictions& p) override {
    std::printf("predictions %d: %lld", p.epoch, static_cast<long long>(p.samples));
    for (const int64_t count : p.confusion) std::printf(" %lld", static_cast<long long>(count));
    for (const double mean : p.mean_softmax) std::printf(" %.9g", mean);
    std::printf("\n");
    std::fflush(stdout);
  }
  void OnEpochMetrics(const EpochMetrics& m) override {
    std::printf("epoch %d: %.9g %.9g %.9g %.9g", m.epoch, m.train_loss, m.train_accuracy,
                m.test_loss, m.test_accuracy);
    if (print_speed_) std::printf(" images/s %.2f", m.images_per_second);
    std::printf("\n");
    std::fflush(stdout);
  }

 private:
  const bool print_speed_;
};

absl::Status TrainModel(const ProcessGroupOptions& group) {
  ExperimentSpec request;
  request.model = absl::GetFlag(FLAGS_train);
  request.dataset = absl::GetFlag(FLAGS_dataset);
  request.epochs = absl::GetFlag(FLAGS_epochs);
  request.batch_size = absl::GetFlag(FLAGS_batch_size);
  request.threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(request);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::string> location =
      LocateDataset(spec->dataset, DatasetSearchPath(spec->dataset, "", "data"));
  if (!location.ok()) return location.status();
  DatasetRequest data;
  data.name = spec->dataset;
  data.data_dir = *location;
  data.max_train_samples = absl::GetFlag(FLAGS_train_samples);
  data.max_test_samples = absl::GetFlag(FLAGS_test_samples);
  absl::StatusOr<Dataset> dataset = LoadDataset(data);
  if (!dataset.ok()) return dataset.status();
  TrainingControl control;
  PrintingSink sink(absl::GetFlag(FLAGS_print_speed));
  if (group.world_size == 1) return Train(*spec, *dataset, control, sink);
  GradientTraffic traffic;
  absl::Status status = TrainRank(*spec, *dataset, group, control, sink, &traffic);
  if (absl::GetFlag(FLAGS_print_speed) && group.rank == 0) {
    std::printf("all-reduce: %lld steps, %.6f s, %lld bytes\n",
                static_cast<long long>(traffic.all_reduces), absl::ToDoubleSeconds(traffic.time),
                static_cast<long long>(traffic.bytes));
  }
  return status;
}

}  // namespace
}  // namespace gradlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  gradlab::ProcessGroupOptions options;
  options.rank = absl::GetFlag(FLAGS_rank);
  options.world_size = absl::GetFlag(FLAGS_world_size);
  options.store_name = absl::GetFlag(FLAGS_store_file);
  if (!options.store_name.empty()) {
    options.store =
        std::make_shared<gradlab::FileRendezvousStore>(options.store_name, options.world_size);
  }
  options.local_address = "127.0.0.1";
  options.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  if (!absl::GetFlag(FLAGS_train).empty()) {
    const absl::Status trained = gradlab::TrainModel(options);
    if (!trained.ok()) std::cout << "error: " << trained << std::endl;
    return trained.ok() ? 0 : 1;
  }
  auto averager = gradlab::GradientAverager::Join(options);
  if (!averager.ok()) {
    std::cout << "error: " << averager.status() << std::endl;
    return 1;
  }
  if (const int64_t size = absl::GetFlag(FLAGS_broadcast_bytes); size >= 0) {
    std::string bytes;
    if (options.rank == 0) {
      for (int64_t i = 0; i < size; ++i) bytes.push_back(static_cast<char>(i * 7 % 251));
    }
    if (absl::Status sent = (*averager)->Broadcast(bytes); !sent.ok()) {
      std::cout << "error: " << sent << std::endl;
      return 1;
    }
    int64_t sum = 0;
    for (char byte : bytes) sum += static_cast<unsigned char>(byte);
    std::cout << "broadcast: " << bytes.size() << " " << sum << std::endl;
  }
  torch::Tensor a = torch::zeros({3});
  torch::Tensor b = torch::zeros({2, 2});
  for (int step = 0; step < absl::GetFlag(FLAGS_steps); ++step) {
    if (step == absl::GetFlag(FLAGS_exit_before_step)) _exit(3);
    const double scale = (options.rank + 1) * (step + 1);
    a.mutable_grad() = torch::arange(3, torch::kFloat) * scale;
    b.mutable_grad() = torch::arange(4, torch::kFloat).view({2, 2}) * -scale;
    const bool stop =
        options.rank == absl::GetFlag(FLAGS_stop_rank) && step == absl::GetFlag(FLAGS_stop_at_step);
    const int64_t reported = absl::GetFlag(FLAGS_report_samples);
    const int64_t batch_samples = options.world_size * (options.world_size + 1) / 2;
    absl::StatusOr<int> votes = (*averager)->Average(
        {a, b}, reported >= 0 ? reported : options.rank + 1, batch_samples, stop);
    if (!votes.ok()) {
      std::cout << "error: " << votes.status() << std::endl;
      return 1;
    }
    if (*votes > 0) {
      std::cout << "stopped at step " << step << ": " << *votes << " votes" << std::endl;
      return 0;
    }
    std::cout << "step " << step << ":";
    for (const torch::Tensor& grad : {a.grad().flatten(), b.grad().flatten()}) {
      for (int64_t i = 0; i < grad.numel(); ++i) std::printf(" %.9g", grad[i].item<double>());
    }
    std::cout << std::endl;
  }
  return 0;
}
