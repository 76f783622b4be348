#include "server/experiments/model_catalogue.h"

#include "absl/strings/str_cat.h"
#include "common/experiment_spec.h"
#include "common/model_table.h"
#include "common/spec_proto.h"
#include "server/engine/dataset_request.h"
#include "server/engine/model_options.h"

namespace gradlab {
namespace {

// The model a default spec builds, at the input the model table describes it with.
ModelOptions DefaultModelOptions(const ExperimentSpec& spec) {
  const ModelTraits& model = *FindModel(spec.model);
  return ModelOptionsFor(spec, model.reference_channels, model.reference_side, model.reference_side,
                         /*num_classes=*/10);
}

}  // namespace

std::vector<v1::ModelInfo> DescribeModels() {
  std::vector<v1::ModelInfo> models;
  for (const std::string& model : ModelNames()) {
    v1::ModelInfo info;
    info.set_name(model);
    ExperimentSpec spec;
    spec.model = model;
    spec = ResolveSpec(spec).value_or(spec);
    const ModelOptions model_options = DefaultModelOptions(spec);
    info.set_parameter_count(CountParameters(model_options).value_or(0));
    info.set_input_shape(absl::StrCat(model_options.in_channels, "x", model_options.height, "x",
                                      model_options.width));
    *info.mutable_default_spec() = SpecToProto(spec);
    models.push_back(std::move(info));
  }
  return models;
}

std::vector<v1::DatasetInfo> DescribeDatasets(const std::string& server_data_dir) {
  std::vector<v1::DatasetInfo> datasets;
  for (const std::string& name : DatasetNames()) {
    v1::DatasetInfo& dataset = datasets.emplace_back();
    dataset.set_name(name);
    absl::StatusOr<std::string> location =
        LocateDataset(name, DatasetSearchPath(name, "", server_data_dir));
    dataset.set_present(location.ok());
    dataset.set_location(location.ok() ? (location->empty() ? "generated from the seed" : *location)
                                       : std::string(location.status().message()));
  }
  return datasets;
}

}  // namespace gradlab
