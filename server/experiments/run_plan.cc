#include "server/experiments/run_plan.h"

#include "absl/strings/str_cat.h"
#include "common/spec_proto.h"

namespace gradlab {

absl::StatusOr<RunPlan> PlanRun(const v1::ExperimentSpec& requested, const PlanLimits& limits) {
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(requested));
  if (!spec.ok()) return spec.status();
  if (spec->threads > limits.threads_per_job) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.threads: ", spec->threads, " is more than this server's threads per job (",
        limits.threads_per_job, "); allowed: 0 to ", limits.threads_per_job));
  }
  if (spec->threads == 0) spec->threads = limits.threads_per_job;
  absl::StatusOr<std::string> location = LocateDataset(
      spec->dataset, DatasetSearchPath(spec->dataset, spec->data_dir, limits.server_data_dir));
  if (!location.ok()) return location.status();
  return RunPlan{*std::move(spec), *std::move(location)};
}

RunPlan StoredPlan(const v1::Experiment& record) {
  RunPlan plan;
  plan.spec = SpecFromProto(record.spec());
  plan.dataset_location =
      record.dataset_location().empty() ? plan.spec.data_dir : record.dataset_location();
  return plan;
}

DatasetRequest DatasetRequestFor(const RunPlan& plan) {
  DatasetRequest request = DatasetRequestFor(plan.spec);
  request.data_dir = plan.dataset_location;
  return request;
}

}  // namespace gradlab
