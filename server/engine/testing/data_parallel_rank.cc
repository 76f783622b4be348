// data_parallel_rank: one rank of a process group, for data_parallel_test, which starts
// several as separate processes (as gradlabd and its workers will be).
//
//   data_parallel_rank --rank=R --world_size=N --port=P [--timeout_ms=T] [--steps=S]
//                      [--exit_before_step=K]
//
// Joins the group (rank 0 hosts the store on port P), then for each step sets
// two parameters' gradients to values known from rank and step, averages them with
// local_samples = rank + 1, and prints "step S: v1 v2 ..." (every averaged value). Errors
// are printed as "error: ..." with exit code 1. --exit_before_step makes the rank vanish
// without a word (exit code 3) before that step, as a crashed worker would.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "server/engine/data_parallel.h"

ABSL_FLAG(int, rank, 0, "this rank");
ABSL_FLAG(int, world_size, 1, "ranks in the group");
ABSL_FLAG(int, port, 0, "the store's port on 127.0.0.1");
ABSL_FLAG(int, timeout_ms, 20000, "rendezvous and collective timeout");
ABSL_FLAG(int, steps, 3, "all-reduces to do");
ABSL_FLAG(int, exit_before_step, -1, "vanish before this step (-1: never)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  gradlab::ProcessGroupOptions options;
  options.rank = absl::GetFlag(FLAGS_rank);
  options.world_size = absl::GetFlag(FLAGS_world_size);
  options.store_port = absl::GetFlag(FLAGS_port);
  options.local_address = "127.0.0.1";
  options.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  auto averager = gradlab::GradientAverager::Join(options);
  if (!averager.ok()) {
    std::cout << "error: " << averager.status() << std::endl;
    return 1;
  }
  torch::Tensor a = torch::zeros({3});
  torch::Tensor b = torch::zeros({2, 2});
  for (int step = 0; step < absl::GetFlag(FLAGS_steps); ++step) {
    if (step == absl::GetFlag(FLAGS_exit_before_step)) _exit(3);
    const double scale = (options.rank + 1) * (step + 1);
    a.mutable_grad() = torch::arange(3, torch::kFloat) * scale;
    b.mutable_grad() = torch::arange(4, torch::kFloat).view({2, 2}) * -scale;
    if (absl::Status averaged = (*averager)->Average({a, b}, options.rank + 1); !averaged.ok()) {
      std::cout << "error: " << averaged << std::endl;
      return 1;
    }
    std::cout << "step " << step << ":";
    for (const torch::Tensor& grad : {a.grad().flatten(), b.grad().flatten()}) {
      for (int64_t i = 0; i < grad.numel(); ++i) std::printf(" %.9g", grad[i].item<double>());
    }
    std::cout << std::endl;
  }
  return 0;
}
