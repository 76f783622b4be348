// Uploaded TorchScript modules are checked in a helper process, never in gradlabd itself:
// torch::jit::load can crash on a hostile file, and a module's code can loop or allocate
// without end. The helper is gradlabd started again in a mode of its own
// (`--check_model=FILE`, RunModelCheckHelper), which limits its own address space and CPU
// time before it loads anything, and which the server kills when it outlives its wall-clock
// budget. Whatever the file does, the server learns only "it is this artifact" or "it is
// refused, because ...".
#ifndef GRADLAB_SERVER_MODELS_MODEL_CHECKER_H_
#define GRADLAB_SERVER_MODELS_MODEL_CHECKER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

struct ModelCheckLimits {
  // The helper's address space (RLIMIT_AS). A small CNN's check runs within 1.5 GiB
  // (measured: below that, LibTorch itself stops loading), so 4 GiB leaves a large model's
  // weights and activations room.
  int64_t memory_bytes = int64_t{4} << 30;
  // Its CPU time (RLIMIT_CPU), then the wall-clock time the server waits for it.
  absl::Duration cpu_time = absl::Seconds(60);
  absl::Duration wall_time = absl::Seconds(120);
};

// Checks the TorchScript file at `path` by running `helper` (gradlabd's own binary) on it.
// The artifact's parameters and datasets as the helper found them (id, name, size and time
// are the caller's to set); INVALID_ARGUMENT saying why the file is refused, including
// when the helper crashed or ran out of its limits; INTERNAL when the helper could not be
// started or said something it should not.
absl::StatusOr<v1::ModelArtifact> CheckModelInHelper(const std::string& helper,
                                                     const std::string& path,
                                                     const ModelCheckLimits& limits);

// The helper's side, for gradlabd's main: limits this process, checks `path`, writes the
// result to stdout and returns the exit code (0: a serialized ModelArtifact follows; 3: the
// file is refused, the reason follows as text).
int RunModelCheckHelper(const std::string& path, int64_t memory_bytes, int cpu_seconds);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_MODELS_MODEL_CHECKER_H_
