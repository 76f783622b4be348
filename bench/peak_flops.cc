// peak_flops: the machine's attainable floating-point rate through LibTorch, the yardstick
// next to which bench/versus_reference puts gradlab's achieved GFLOP/s. Times large
// operations that run near the hardware's limit: a 3x3 convolution on channels-last
// tensors (oneDNN, the kernels the conv models use) in fp32 and bf16, and a square matrix
// product (fp32 through the system BLAS, bf16 through oneDNN). Prints the best of
// --repeats runs of each as one line "peak op=... dtype=... gflop_per_second=...".
//
//   build/bench/peak_flops [--threads=2] [--repeats=10]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(int, repeats, 10, "timed runs of each operation; the fastest counts");

namespace {

// The fastest of `repeats` runs of `op`, in seconds, after two warm-up runs.
double FastestSeconds(const std::function<void()>& op, int repeats) {
  op();
  op();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    op();
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

void Report(const char* op, torch::ScalarType dtype, double flops, double seconds) {
  std::printf("peak op=%s dtype=%s gflop_per_second=%.1f\n", op,
              dtype == torch::kBFloat16 ? "bf16" : "fp32", flops / seconds / 1e9);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Measures the attainable GFLOP/s of convolutions and GEMM.");
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int repeats = absl::GetFlag(FLAGS_repeats);
  torch::NoGradGuard no_grad;
  for (torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    // resnet's widest layer: 256 -> 256 channels, 3x3, on 16x16, a batch of 128.
    const int64_t batch = 128, channels = 256, side = 16;
    const torch::Tensor input = torch::randn({batch, channels, side, side})
                                    .to(dtype)
                                    .contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor weight = torch::randn({channels, channels, 3, 3})
                                     .to(dtype)
                                     .contiguous(at::MemoryFormat::ChannelsLast);
    const double conv_flops = 2.0 * batch * side * side * channels * channels * 9;
    Report("conv3x3", dtype, conv_flops,
           FastestSeconds([&] { torch::conv2d(input, weight, {}, /*stride=*/1, /*padding=*/1); },
                          repeats));

    const int64_t n = 2048;
    const torch::Tensor a = torch::randn({n, n}).to(dtype);
    const torch::Tensor b = torch::randn({n, n}).to(dtype);
    Report("gemm", dtype, 2.0 * n * n * n, FastestSeconds([&] { torch::mm(a, b); }, repeats));
  }
  return 0;
}
