// A StartExperiment's spec settled once, before the experiment exists: every default
// filled in (ResolveSpec), the intra-op threads it trains with, and where its dataset is.
// Every later step (the record the API shows, the training run, a restart, the remote
// ranks) reads the plan rather than settling the spec again.
#ifndef GRADLAB_SERVER_EXPERIMENTS_RUN_PLAN_H_
#define GRADLAB_SERVER_EXPERIMENTS_RUN_PLAN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/experiment_spec.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/engine/dataset_request.h"
#include "server/models/model_registry.h"

namespace gradlab {

struct RunPlan {
  // Every field set; data_dir is what the client sent; an uploaded model's name pinned to
  // its id ("uploaded:<sha256>").
  ExperimentSpec spec;
  // The folder the dataset loads from; empty for the synthetic dataset.
  std::string dataset_location;
  // An uploaded model's TorchScript file; empty for a built-in model.
  std::string model_file;
};

// What a server allows and where it looks for datasets.
struct PlanLimits {
  int threads_per_job = 1;
  std::string server_data_dir;  // --data_dir
  // The folders a spec's data_dir may name (with what is inside them); empty: the
  // server's data_dir and /usr/share/datasets.
  std::vector<std::string> allowed_data_dirs;
  // The uploaded models a spec may name; null: none (a server without a state folder).
  const ModelRegistry* models = nullptr;
};

// INVALID_ARGUMENT naming the field for a spec the server cannot run, among them a
// data_dir that is, or whose dataset folder is (symlinks resolved), outside the allowed
// folders: said without a word on what is there. FAILED_PRECONDITION (with where it
// looked) for a dataset that is not there, or an uploaded model that is not; INVALID_ARGUMENT
// saying why for an uploaded model that does not train on the spec's dataset.
absl::StatusOr<RunPlan> PlanRun(const v1::ExperimentSpec& requested, const PlanLimits& limits);

// The plan of an experiment read back from the store. Records stored before
// dataset_location existed held the location in spec.data_dir. Its model_file is left to
// ModelFileOf.
RunPlan StoredPlan(const v1::Experiment& record);

// The file of the uploaded model a resolved spec trains; "" for a built-in model.
std::string ModelFileOf(const ExperimentSpec& spec, const ModelRegistry* models);

// The dataset a plan trains on.
DatasetRequest DatasetRequestFor(const RunPlan& plan);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_RUN_PLAN_H_
