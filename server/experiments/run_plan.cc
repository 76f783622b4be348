#include "server/experiments/run_plan.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/client_text.h"
#include "common/spec_proto.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;

// `path` with symlinks resolved as far as it exists, made absolute.
fs::path Resolved(const std::string& path) {
  std::error_code error;
  fs::path resolved = fs::weakly_canonical(fs::absolute(path, error), error);
  return error ? fs::absolute(path).lexically_normal() : resolved;
}

bool IsWithin(const fs::path& path, const fs::path& folder) {
  auto [folder_end, path_end] =
      std::mismatch(folder.begin(), folder.end(), path.begin(), path.end());
  return folder_end == folder.end() ||
         (std::next(folder_end) == folder.end() && folder_end->empty());  // "dir/"
}

// OK when `dir` is one of `allowed` or inside one, symlinks resolved.
absl::Status CheckAllowed(const std::string& dir, const std::vector<std::string>& allowed) {
  const fs::path resolved = Resolved(dir);
  for (const std::string& folder : allowed) {
    if (IsWithin(resolved, Resolved(folder))) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("spec.data_dir: ", QuoteClientText(dir),
                   " is outside the folders this server reads datasets from (",
                   absl::StrJoin(allowed, ", "), "; gradlabd --allowed_data_dirs sets them)"));
}

// The file of the uploaded model `spec` names, pinning a name to its id in spec.model.
absl::StatusOr<std::string> PinUploadedModel(ExperimentSpec& spec, const ModelRegistry* models) {
  if (models == nullptr) {
    return absl::FailedPreconditionError(
        "spec.model: this server keeps no uploaded models (gradlabd runs without --state_dir)");
  }
  const std::string reference(UploadedModelReference(spec.model));
  absl::StatusOr<v1::ModelArtifact> artifact = models->Get(reference);
  if (absl::IsNotFound(artifact.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("spec.model: no uploaded model has the id or name ",
                     QuoteClientText(reference), " (`gradlab models list` lists them)"));
  }
  if (!artifact.ok()) return artifact.status();
  std::vector<std::string> fitting;
  const v1::DatasetFit* fit = nullptr;
  for (const v1::DatasetFit& dataset : artifact->datasets()) {
    if (dataset.fits()) fitting.push_back(dataset.dataset());
    if (dataset.dataset() == spec.dataset) fit = &dataset;
  }
  if (fit == nullptr || !fit->fits()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.model: the uploaded model ", QuoteClientText(reference), " does not train on ",
        spec.dataset, fit == nullptr ? " (it was not checked on it)" : ": ",
        fit == nullptr ? "" : fit->reason(), "; it trains on ",
        fitting.empty() ? "none of this server's datasets" : absl::StrJoin(fitting, ", ")));
  }
  spec.model = absl::StrCat(kUploadedModelPrefix, artifact->id());
  return models->FileOf(artifact->id());
}

}  // namespace

std::string ModelFileOf(const ExperimentSpec& spec, const ModelRegistry* models) {
  if (!IsUploadedModel(spec.model) || models == nullptr) return "";
  return models->FileOf(std::string(UploadedModelReference(spec.model))).value_or("");
}

absl::StatusOr<RunPlan> PlanRun(const v1::ExperimentSpec& requested, const PlanLimits& limits) {
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(requested));
  if (!spec.ok()) return spec.status();
  if (spec->threads > limits.threads_per_job) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.threads: ", spec->threads, " is more than this server's threads per job (",
        limits.threads_per_job, "); allowed: 0 to ", limits.threads_per_job));
  }
  if (spec->threads == 0) spec->threads = limits.threads_per_job;
  std::string model_file;
  if (IsUploadedModel(spec->model)) {
    absl::StatusOr<std::string> file = PinUploadedModel(*spec, limits.models);
    if (!file.ok()) return file.status();
    model_file = *std::move(file);
  }
  std::vector<std::string> allowed = limits.allowed_data_dirs;
  if (allowed.empty()) {
    if (!limits.server_data_dir.empty()) allowed.push_back(limits.server_data_dir);
    allowed.push_back("/usr/share/datasets");
  }
  // Before anything is looked for there: the answer says nothing of other folders.
  if (!spec->data_dir.empty() && spec->dataset != "synthetic") {
    if (absl::Status status = CheckAllowed(spec->data_dir, allowed); !status.ok()) return status;
  }
  absl::StatusOr<std::string> location = LocateDataset(
      spec->dataset, DatasetSearchPath(spec->dataset, spec->data_dir, limits.server_data_dir));
  if (!location.ok()) return location.status();
  if (!spec->data_dir.empty() && !location->empty()) {
    // A subfolder it found the files in (cifar-10-batches-bin) may be a symlink too.
    if (absl::Status status = CheckAllowed(*location, allowed); !status.ok()) return status;
  }
  return RunPlan{*std::move(spec), *std::move(location), std::move(model_file)};
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
