// What a server offers, for ServerInfo: its models (with their parameter counts and
// default specs) and its datasets (where each was found, or why not).
#ifndef GRADLAB_SERVER_EXPERIMENTS_MODEL_CATALOGUE_H_
#define GRADLAB_SERVER_EXPERIMENTS_MODEL_CATALOGUE_H_

#include <string>
#include <vector>

#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// Every model, in the order of ModelNames(); builds each once to count its parameters.
std::vector<v1::ModelInfo> DescribeModels();
// Every dataset, looked for as a spec without data_dir would be (see DatasetSearchPath).
std::vector<v1::DatasetInfo> DescribeDatasets(const std::string& server_data_dir);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_MODEL_CATALOGUE_H_
